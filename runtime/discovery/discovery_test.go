package discovery

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, tc := range []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: FormatTime(at), want: at},
		{in: "2030-01-02T04:04:05.000000006+01:00", want: at},
		{in: "2030-01-02T03:04:05Z", want: at.Truncate(time.Second)},
		{in: "0001-01-01T00:30:00+01:00", wantErr: true}, // year 0 in UTC
		{in: "yesterday", wantErr: true},
		{in: "1700000000", wantErr: true},
	} {
		got, err := ParseTime(tc.in)
		if (err != nil) != tc.wantErr || !got.Equal(tc.want) || err == nil && got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v, %v; want %v in UTC, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if got := FormatTime(at.In(time.FixedZone("x", -3600))); got != "2030-01-02T03:04:05.000000006Z" {
		t.Errorf("FormatTime() = %q, want UTC with nanoseconds", got)
	}
}

func TestMetadataRegisteredAt(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	m := Metadata{RegisteredAt: at}
	if m.IsZero() {
		t.Error("Metadata{RegisteredAt: t}.IsZero() = true")
	}
	if !m.Equal(Metadata{RegisteredAt: at.In(time.FixedZone("x", 3600))}) {
		t.Error("Equal() = false for the same instant in another zone")
	}
	if m.Equal(Metadata{RegisteredAt: at.Add(time.Nanosecond)}) {
		t.Error("Equal() = true for registration times 1 ns apart")
	}
}
