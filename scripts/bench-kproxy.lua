-- wrk script: POST /commit with a 200-byte body and a key from 10,000,
-- acks from the second script argument; the third chooses the body:
--   msgpack  (default) a 200-byte msgpack map, no Content-Type (msgpack is the default)
--   json     the same map as 200 bytes of JSON, Content-Type: application/json
--   headers  the msgpack body and three X-Kafka-Header-* record headers
--   wrk -s scripts/bench-kproxy.lua URL -- TOPIC ACKS [FORMAT]
local topic, acks, format = "bench", "1", "msgpack"
local counter = 0
-- {"method":"TestUserName","uid":12345,"payload":<162 x>} = 200 bytes
local msgpack = "\131\166method\172TestUserName\163uid\205\48\57\167payload\217\162" .. string.rep("x", 162)
-- the same map as JSON, 200 bytes
local json = '{"method":"TestUserName","uid":12345,"payload":"' .. string.rep("x", 150) .. '"}'
local body, headers = msgpack, nil
local requests = {}

function init(args)
  topic = args[1] or topic
  acks = args[2] or acks
  format = args[3] or format
  if format == "json" then
    body, headers = json, { ["Content-Type"] = "application/json" }
  elseif format == "headers" then
    headers = {
      ["X-Kafka-Header-Trace-Id"] = "4bf92f3577b34da6a3ce929d0e0e4736",
      ["X-Kafka-Header-Tenant"] = "acme",
      ["X-Kafka-Header-Source"] = "bench-kproxy",
    }
  elseif format ~= "msgpack" then
    error("format must be msgpack, json or headers, got " .. format)
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  counter = math.random(0, 9999)
  -- Every request is made once here, so that the formats cost wrk (on
  -- the same machine) the same: formatting three headers per request in
  -- Lua is measurably slower than one.
  for k = 0, 9999 do
    requests[k] = wrk.format("POST", "/commit?topic=" .. topic .. "&acks=" .. acks .. "&key=user" .. k, headers, body)
  end
end

function request()
  counter = (counter + 1) % 10000
  return requests[counter]
end
