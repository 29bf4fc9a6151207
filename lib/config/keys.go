package config

import "go.yaml.in/yaml/v3"

// TopKeys returns the top-level keys of a configuration file's data that
// are given a value ("key:" with none keeps the default, so it is not
// one): how a loader tells a key the file sets from one it leaves out,
// whatever the value. It returns nil for data that does not parse into a
// mapping (Decode reports why).
func TopKeys(data []byte) map[string]bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	pairs, _ := MappingPairs(doc.Content[0]) // merged keys are set too
	set := map[string]bool{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1].Tag != "!!null" {
			set[pairs[i].Value] = true
		}
	}
	return set
}
