package bench

import "testing"

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis, as /proc/<pid>/stat may hold.
	stat := "4242 (opview (relay) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 12345 678 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 3.25 {
		t.Fatalf("parseStatCPU = %v, %v; want 3.25 s (250+75 ticks)", got, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 a b 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS([]byte("Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t   15392 kB\nRssAnon:\t 1 kB\n"))
	if err != nil || got != 15392*1024 {
		t.Fatalf("parseVmRSS = %v, %v", got, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Fatal("no VmRSS accepted")
	}
}
