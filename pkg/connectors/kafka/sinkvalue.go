package kafka

import (
	"strconv"
	"time"

	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
)

// toBytes renders a value as record bytes: strings as UTF-8, bytes as they
// are, numbers and booleans as text, timestamps in RFC 3339, maps and lists
// (and structs, which are maps in a row) as JSON. Nil stays nil (no key, a
// tombstone value, no header). Values are as columnar.AppendRows reads
// them, on both paths.
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
