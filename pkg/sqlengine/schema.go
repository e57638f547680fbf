//go:build duckdb_arrow

package sqlengine

import (
	"encoding/json"
	"fmt"
	"strings"
)

// SparkSchema translates a Spark DDL schema string ("branch STRING, amount
// BIGINT"), as from_json and a decode step take it, into the structure
// DuckDB's json_transform takes, and returns the top-level field names in
// order. The types accepted are from_json's (see the package
// documentation). Callers building SQL around the structure must quote it
// as a string literal.
func SparkSchema(ddl string) (structure string, names []string, err error) {
	if strings.TrimSpace(ddl) == "" {
		return "", nil, fmt.Errorf("empty schema")
	}
	structure, err = sparkSchema(ddl)
	if err != nil {
		return "", nil, err
	}
	// The structure keeps the fields' order; read the names back in it.
	dec := json.NewDecoder(strings.NewReader(structure))
	if _, err := dec.Token(); err != nil { // {
		return "", nil, fmt.Errorf("schema %q: %w", ddl, err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", nil, fmt.Errorf("schema %q: %w", ddl, err)
		}
		name, ok := tok.(string)
		if !ok {
			return "", nil, fmt.Errorf("schema %q: not an object of fields", ddl)
		}
		names = append(names, name)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", nil, fmt.Errorf("schema %q: %w", ddl, err)
		}
	}
	return structure, names, nil
}
