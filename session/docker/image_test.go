package docker

import (
	"testing"
)

// The builder's stream arrives split anywhere, with colour codes, \r
// counters and bookkeeping lines; what leaves is one clean line per write.
func TestBuildLogCleansLines(t *testing.T) {
	var writes []string
	out := writerFunc(func(p []byte) (int, error) { writes = append(writes, string(p)); return len(p), nil })
	b := &buildLog{out: out}
	for _, chunk := range []string{
		"Step 1/2 : FROM ba", "se\n ---> 6a2e104c58fd\n",
		"\x1b[91mE: Unable to locate package x\n\x1b[0m",
		"(Reading database ... 5%\r(Reading database ... 100%\n",
		"Removing intermediate container 1fdefe157ef3\nSuccessfully tagged x:latest\n",
		"no newline at the end",
	} {
		b.Write([]byte(chunk))
	}
	b.Flush()
	want := []string{"Step 1/2 : FROM base\n", "E: Unable to locate package x\n", "(Reading database ... 100%\n", "no newline at the end\n"}
	if len(writes) != len(want) {
		t.Fatalf("writes = %q, want %q", writes, want)
	}
	for i := range want {
		if writes[i] != want[i] {
			t.Errorf("write %d = %q, want %q", i, writes[i], want[i])
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
