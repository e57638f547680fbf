package testenv

import (
	"encoding/base64"
	"strings"
)

// SecretEncodings lists the forms a marker secret m takes in stored or
// served bytes, for tests that search logs, catalogs and answers for a
// leaked secret: m itself and the middle of its base64 encodings (standard
// and URL alphabets) at each of the three alignments, which JSON uses for
// bytes fields such as a catalog entry's spec.
func SecretEncodings(m string) []string {
	out := []string{m}
	for off := range 3 {
		plain := strings.Repeat("\x00", off) + m
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			e := enc.EncodeToString([]byte(plain))
			start := 0
			if off > 0 {
				start = 4 // the block shared with the bytes before m
			}
			out = append(out, e[start:len(e)-4]) // and the one after it
		}
	}
	return out
}
