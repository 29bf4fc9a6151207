-- wrk script: POST /commit with a 200-byte msgpack map and a key from
-- 10,000, acks from the first script argument.
--   wrk -s scripts/bench-kproxy.lua URL -- TOPIC ACKS
local topic, acks = "bench", "1"
local counter = 0
-- {"method":"TestUserName","uid":12345,"payload":<162 x>} = 200 bytes
local body = "\131\166method\172TestUserName\163uid\205\48\57\167payload\217\162" .. string.rep("x", 162)

function init(args)
  topic = args[1] or topic
  acks = args[2] or acks
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  counter = math.random(0, 9999)
end

function request()
  counter = (counter + 1) % 10000
  return wrk.format("POST", "/commit?topic=" .. topic .. "&acks=" .. acks .. "&key=user" .. counter, nil, body)
end
