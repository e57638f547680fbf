package transform

import (
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/pkg/stream"
)

// benchRows builds n Kafka rows with ~120-byte JSON payloads over a few
// branches and currencies.
func benchRows(n int) []stream.Row {
	branches := []string{"Kazan", "Omsk", "Tver", "Perm", "Samara", "Tomsk"}
	currencies := []string{"RUB", "USD", "EUR"}
	rows := make([]stream.Row, n)
	for i := range rows {
		payload := fmt.Sprintf(`{"branch":%q,"currency":%q,"amount":%d,"account":"40817810%012d","ts":"2026-03-01T12:00:00Z","ok":true}`,
			branches[i%len(branches)], currencies[i%len(currencies)], i%200-100, i)
		rows[i] = kafkaRow(int64(i), payload)
	}
	return rows
}

// BenchmarkPipelineJSONAggregate is the typical job: decode JSON, filter,
// and aggregate per batch. One op is one record.
func BenchmarkPipelineJSONAggregate(b *testing.B) {
	p := mustCompile(b,
		Step{Decode: &Decode{Format: "json"}},
		Step{Filter: `amount != 0 && currency == "RUB"`},
		Step{Aggregate: &Aggregate{
			GroupBy:      []string{"branch", "currency"},
			Aggregations: []Aggregation{{Fn: "sum", Field: "amount", As: "batch_value"}, {Fn: "count"}},
		}},
	)
	const chunk = 1000
	rows := benchRows(chunk)
	var size int
	for _, r := range rows {
		size += len(r["value"].([]byte))
	}
	b.SetBytes(int64(size / chunk))
	b.ReportAllocs()
	a := p.NewAggregator()
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		in := rows
		if left := b.N - done; left < chunk {
			in = rows[:left]
		}
		out, bad := p.Process(in)
		if len(bad) != 0 {
			b.Fatal(bad[0])
		}
		for _, r := range out {
			if err := a.Add(r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	if a.Len() == 0 && b.N > chunk {
		b.Fatal("no groups")
	}
}

// BenchmarkDecodeJSON isolates the JSON decode step.
func BenchmarkDecodeJSON(b *testing.B) {
	p := mustCompile(b, Step{Decode: &Decode{Format: "json"}})
	rows := benchRows(1000)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += len(rows) {
		p.Process(rows[:min(len(rows), b.N-done)])
	}
}

// BenchmarkFilter isolates CEL filter evaluation.
func BenchmarkFilter(b *testing.B) {
	p := mustCompile(b, Step{Filter: `amount != 0 && currency == "RUB"`})
	rows := make([]stream.Row, 1000)
	for i := range rows {
		rows[i] = stream.Row{"branch": "Kazan", "currency": "RUB", "amount": int64(i - 500), "offset": int64(i)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += len(rows) {
		p.Process(rows[:min(len(rows), b.N-done)])
	}
}
