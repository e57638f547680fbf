//go:build duckdb_arrow

package sqlengine

import (
	"fmt"
	"strings"
)

// Spark writes datetime patterns as Java's DateTimeFormatter does
// (yyyy-MM-dd HH:mm:ss); DuckDB's strftime and strptime take C-style
// specifiers (%Y-%m-%d %H:%M:%S). javaPattern translates the letters below
// and refuses the rest, naming the letter, rather than print or parse
// something else than Spark would:
//
//	y, yyyy   year (%Y)            yy    two-digit year (%y)
//	M / MM    month 1 / 01          MMM   Jan      MMMM  January
//	d / dd    day of month          D / DDD day of year (5 / 005)
//	H / HH    hour 0-23             h / hh  hour 1-12
//	m / mm    minute                s / ss  second
//	SSS       milliseconds          SSSSSS  microseconds
//	a         AM/PM                 E, EE, EEE  Mon   EEEE  Monday
//	'text'    literal text          ''      a single quote
//	z, VV, Z, X, XX, XXX, x, xx, xxx  the zone: parsed with %z/%Z; when
//	          formatting, the engine's time zone is always UTC, so these print
//	          Spark's UTC rendering (UTC, +0000, Z, +00, +00:00) literally.
//
// Any other character outside quotes is copied; % is escaped.
func javaPattern(p string, parse bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); {
		c := p[i]
		if c == '\'' {
			if i+1 < len(p) && p[i+1] == '\'' {
				b.WriteByte('\'')
				i += 2
				continue
			}
			j := i + 1
			for ; j < len(p); j++ {
				if p[j] == '\'' {
					if j+1 < len(p) && p[j+1] == '\'' {
						b.WriteByte('\'')
						j++
						continue
					}
					break
				}
				writeLiteral(&b, p[j])
			}
			if j >= len(p) {
				return "", fmt.Errorf("datetime pattern %q: unterminated quote at character %d", p, i)
			}
			i = j + 1
			continue
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			if c == '[' || c == ']' || c == '#' || c == '{' || c == '}' {
				return "", fmt.Errorf("datetime pattern %q: %q at character %d is not supported", p, c, i)
			}
			writeLiteral(&b, c)
			i++
			continue
		}
		n := 1
		for i+n < len(p) && p[i+n] == c {
			n++
		}
		spec, ok := javaLetter(c, n, parse)
		if !ok {
			return "", fmt.Errorf("datetime pattern %q: %s at character %d is not supported (supported: y yy M MM MMM MMMM d dd D DDD H HH h hh m mm s ss SSS SSSSSS a E EEEE z Z X x and 'text')", p, strings.Repeat(string(c), n), i)
		}
		b.WriteString(spec)
		i += n
	}
	return b.String(), nil
}

func writeLiteral(b *strings.Builder, c byte) {
	if c == '%' {
		b.WriteString("%%")
		return
	}
	b.WriteByte(c)
}

func javaLetter(c byte, n int, parse bool) (string, bool) {
	pick := func(specs ...string) (string, bool) {
		if n > len(specs) || specs[n-1] == "" {
			return "", false
		}
		return specs[n-1], true
	}
	switch c {
	case 'y':
		if n == 2 {
			return "%y", true
		}
		return pick("%Y", "%y", "%Y", "%Y")
	case 'M', 'L':
		return pick("%-m", "%m", "%b", "%B")
	case 'd':
		return pick("%-d", "%d")
	case 'D':
		return pick("%-j", "", "%j")
	case 'H':
		return pick("%-H", "%H")
	case 'h':
		return pick("%-I", "%I")
	case 'm':
		return pick("%-M", "%M")
	case 's':
		return pick("%-S", "%S")
	case 'S':
		return pick("", "", "%g", "", "", "%f")
	case 'a':
		return pick("%p")
	case 'E':
		return pick("%a", "%a", "%a", "%A")
	}
	if parse {
		switch c {
		case 'z', 'V':
			return "%Z", n <= 4
		case 'Z', 'X', 'x':
			return "%z", n <= 3
		}
		return "", false
	}
	// Formatting: the session time zone is UTC (see the Engine's settings),
	// so the zone prints as Spark prints UTC.
	switch c {
	case 'z':
		return pick("UTC", "UTC", "UTC", "Coordinated Universal Time")
	case 'V':
		return pick("", "UTC")
	case 'Z':
		return pick("+0000", "+0000", "+0000")
	case 'X':
		return pick("Z", "Z", "Z")
	case 'x':
		return pick("+00", "+0000", "+00:00")
	}
	return "", false
}
