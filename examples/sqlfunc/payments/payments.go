//go:build duckdb_arrow

// Package payments holds the Go functions of the sqlfunc example, for the
// example's program and for its sluice-fn binary.
package payments

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/pkg/sqlengine"
)

// eurPerUnit converts the example's currencies to euros.
var eurPerUnit = map[string]float64{"EUR": 1, "USD": 0.92, "GBP": 1.17}

// Functions are the example's Go functions: a string one and a numeric one
// that can fail.
func Functions() (*sqlengine.Registry, error) {
	r := sqlengine.NewRegistry()
	err := r.Register(
		// mask_iban('DE89370400440532013000') = 'DE89 **** 3000'
		sqlengine.Scalar1("mask_iban", func(iban string) (string, error) {
			if len(iban) < 8 {
				return "****", nil
			}
			return iban[:4] + " **** " + iban[len(iban)-4:], nil
		}),
		// to_eur(amount, currency): an error fails the query, naming it.
		sqlengine.Scalar2("to_eur", func(amount int64, currency string) (float64, error) {
			rate, ok := eurPerUnit[strings.ToUpper(currency)]
			if !ok {
				return 0, fmt.Errorf("to_eur: no rate for %q", currency)
			}
			return float64(amount) * rate, nil
		}),
	)
	return r, err
}
