package kafka

import (
	"strconv"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"

	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
)

// The sink's expressions are compiled and evaluated by pkg/transform
// (transform.CompileExpr), so they follow the transforms' CEL dialect: a
// row's fields are top-level identifiers, the whole row is the map "row",
// and a bare field name is read from the row without evaluating CEL.

// mayBe reports whether a checked type t can be one of kinds (dyn and any
// can be anything).
func mayBe(t *cel.Type, kinds ...types.Kind) bool {
	switch k := t.Kind(); k {
	case types.DynKind, types.AnyKind, types.ErrorKind:
		return true
	default:
		for _, want := range kinds {
			if k == want {
				return true
			}
		}
	}
	return false
}

// toBytes renders a value as record bytes: strings as UTF-8, bytes as they
// are, numbers and booleans as text, timestamps in RFC 3339, maps and lists
// as JSON. Nil stays nil (no key, a tombstone value, no header).
func toBytes(v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []byte:
		return x, nil
	case string:
		return []byte(x), nil
	case bool:
		return strconv.AppendBool(nil, x), nil
	case int64:
		return strconv.AppendInt(nil, x, 10), nil
	case float64:
		return rowjson.AppendFloat(nil, x), nil
	case time.Time:
		return x.AppendFormat(nil, time.RFC3339Nano), nil
	}
	return rowjson.AppendValue(nil, v)
}
