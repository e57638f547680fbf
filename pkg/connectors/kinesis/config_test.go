package kinesis

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	s, err := Config{StreamName: "b, a"}.settings()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.streams, ",") != "a,b" || s.initial != initialLatest || s.maxRecords != 10000 ||
		s.maxFetchRate != 1<<20 || s.minFetchPeriod != 400*time.Millisecond || s.maxFetchDuration != 10*time.Second ||
		s.fetchBufferSize != 20<<30 || s.shardsPerTask != 5 || s.pageSize != 100 || s.listInterval != time.Second {
		t.Fatalf("defaults: %+v", s)
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config { return Config{StreamName: "clicks"} }
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
		want  string
	}{
		{"no stream", func(c *Config) { c.StreamName = " " }, "streamName", "required"},
		{"bad stream", func(c *Config) { c.StreamName = "a b" }, "streamName", "not a stream name"},
		{"empty in list", func(c *Config) { c.StreamName = "a,,b" }, "streamName", "empty name"},
		{"duplicate", func(c *Config) { c.StreamName = "a,a" }, "streamName", "twice"},
		{"endpoint", func(c *Config) { c.Endpoint = "localhost:4567" }, "endpoint", "URL"},
		{"position", func(c *Config) { c.InitialPosition = "oldest" }, "initialPosition", "not one of"},
		{"at_timestamp without time", func(c *Config) { c.InitialPosition = "at_timestamp" }, "atTimestamp", "required"},
		{"time without at_timestamp", func(c *Config) { c.AtTimestamp = "2024-01-01T00:00:00Z" }, "atTimestamp", "initialPosition"},
		{"bad time", func(c *Config) { c.InitialPosition, c.AtTimestamp = "at_timestamp", "yesterday" }, "atTimestamp", "RFC 3339"},
		{"bad pattern", func(c *Config) {
			c.InitialPosition, c.AtTimestamp, c.TimestampFormat = "at_timestamp", "2024", "yyyy QQ"
		}, "timestampFormat", "QQ"},
		{"bad JSON position", func(c *Config) { c.InitialPosition = `{"at":"x"}` }, "initialPosition", "JSON form"},
		{"unknown zone", func(c *Config) {
			c.InitialPosition = `{"at_timestamp": "06/25/2020 10:23:45 XYZ"}`
		}, "initialPosition", "XYZ"},
		{"records", func(c *Config) { c.MaxRecordsPerFetch = 10001 }, "maxRecordsPerFetch", "between 1 and 10000"},
		{"rate", func(c *Config) { c.MaxFetchRate = 3 }, "maxFetchRate", "must be between 0 and 2.0 MB/s (got 3)"},
		{"negative rate", func(c *Config) { c.MaxFetchRate = -1 }, "maxFetchRate", "between 0 and 2.0"},
		{"period", func(c *Config) { c.MinFetchPeriod = "100ms" }, "minFetchPeriod", "at least 200ms"},
		{"period syntax", func(c *Config) { c.MinFetchPeriod = "soon" }, "minFetchPeriod", "duration"},
		{"zero duration", func(c *Config) { c.MaxFetchDuration = "0s" }, "maxFetchDuration", "positive"},
		{"buffer", func(c *Config) { c.FetchBufferSize = "10 parsecs" }, "fetchBufferSize", "unknown unit"},
		{"shards per task", func(c *Config) { c.ShardsPerTask = -1 }, "shardsPerTask", "positive"},
		{"page", func(c *Config) { c.MaxShardsPerDescribe = 20000 }, "maxShardsPerDescribe", "10000"},
		{"alias conflict", func(c *Config) { c.ShardFetchInterval, c.DescribeShardInterval = "1s", "2s" }, "describeShardInterval", "alias"},
		{"interval", func(c *Config) { c.DescribeShardInterval = "-1s" }, "describeShardInterval", "negative"},
		{"secret without key", func(c *Config) { c.AWSSecretKey = "s" }, "awsAccessKey", "required"},
		{"external id without role", func(c *Config) { c.RoleExternalID = "x" }, "roleArn", "required"},
		{"sts endpoint", func(c *Config) { c.RoleARN, c.STSEndpoint = "arn:aws:iam::1:role/r", "sts" }, "stsEndpoint", "URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(&c)
			err := c.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *FieldError", err)
			}
			found := false
			for _, sub := range err.(interface{ Unwrap() []error }).Unwrap() {
				if errors.As(sub, &fe) && fe.Field == tt.field && strings.Contains(fe.Reason, tt.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("err = %v, want field %s mentioning %q", err, tt.field, tt.want)
			}
		})
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	err := Config{StreamName: "", MaxFetchRate: 5, MinFetchPeriod: "1ms"}.Validate()
	for _, f := range []string{"streamName", "maxFetchRate", "minFetchPeriod"} {
		if !strings.Contains(err.Error(), f+":") {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
}

func TestInitialPositionOptions(t *testing.T) {
	pdt := time.FixedZone("PDT", -7*3600)
	tests := []struct {
		pos, at, format string
		want            string
		wantAt          time.Time
	}{
		{"", "", "", initialLatest, time.Time{}},
		{"LATEST", "", "", initialLatest, time.Time{}},
		{"earliest", "", "", initialTrimHorizon, time.Time{}},
		{"TRIM_HORIZON", "", "", initialTrimHorizon, time.Time{}},
		{"at_timestamp", "2020-06-25T10:23:45-07:00", "", initialAtTimestamp, time.Date(2020, 6, 25, 10, 23, 45, 0, pdt)},
		{"at_timestamp", "06/25/2020 10:23:45 PDT", "", initialAtTimestamp, time.Date(2020, 6, 25, 10, 23, 45, 0, pdt)},
		{"at_timestamp", "2020-06-25 17:23:45.250", "yyyy-MM-dd HH:mm:ss.SSS", initialAtTimestamp, time.Date(2020, 6, 25, 17, 23, 45, 250e6, time.UTC)},
		{"at_timestamp", "2020-06-25T10:23:45-0700", "yyyy-MM-dd'T'HH:mm:ssZ", initialAtTimestamp, time.Date(2020, 6, 25, 10, 23, 45, 0, pdt)},
		{`{"at_timestamp": "06/25/2020 10:23:45 PDT"}`, "", "", initialAtTimestamp, time.Date(2020, 6, 25, 10, 23, 45, 0, pdt)},
		{`{"at_timestamp": "25.06.2020 19:23 CEST", "format": "dd.MM.yyyy HH:mm z"}`, "", "", initialAtTimestamp,
			time.Date(2020, 6, 25, 17, 23, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		s, err := Config{StreamName: "s", InitialPosition: tt.pos, AtTimestamp: tt.at, TimestampFormat: tt.format}.settings()
		if err != nil {
			t.Errorf("%q %q %q: %v", tt.pos, tt.at, tt.format, err)
			continue
		}
		if s.initial != tt.want || !s.at.Equal(tt.wantAt) {
			t.Errorf("%q %q %q: got %s %v, want %s %v", tt.pos, tt.at, tt.format, s.initial, s.at, tt.want, tt.wantAt)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "1kb": 1024, "64MB": 64 << 20, "2g": 2 << 30, "1.5k": 1536, " 3 b ": 3} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "mb", "1 zb", "-1mb"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) succeeded", in)
		}
	}
}

func TestIdentityIgnoresCredentialsAndOrder(t *testing.T) {
	a, _ := Config{StreamName: "b,a", Region: "eu-west-1", AWSAccessKey: "k1", AWSSecretKey: "s1"}.Identity()
	b, _ := Config{StreamName: "a,b", Region: "eu-west-1", AWSAccessKey: "k2", AWSSecretKey: "s2", MaxFetchRate: 2}.Identity()
	c, _ := Config{StreamName: "a,b", Region: "eu-west-1", RoleARN: "arn:aws:iam::123456789012:role/x"}.Identity()
	if a != b || a == c || a != "kinesis:region=eu-west-1;streamName=a,b" {
		t.Fatalf("identities %q %q %q", a, b, c)
	}
	if strings.Contains(a+c, "s1") {
		t.Fatal("identity shows a secret")
	}
}
