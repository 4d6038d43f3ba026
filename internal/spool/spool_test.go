package spool_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"testing"

	"github.com/terragate/terragate/internal/spool"
)

// A body staged in pieces reads back byte for byte, each piece decoding on its own, and the
// temp file goes with Close.
func TestRoundTrip(t *testing.T) {
	for _, size := range []int{1, spool.PieceSize - 1, spool.PieceSize, 3*spool.PieceSize + 17} {
		body := make([]byte, size)
		_, _ = rand.Read(body[:size/2]) // half incompressible, half zeros
		dir := t.TempDir()
		s, err := spool.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 7919) // writes that straddle pieces
			if _, err := s.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := s.Finish(); err != nil {
			t.Fatal(err)
		}
		want := (size + spool.PieceSize - 1) / spool.PieceSize
		if s.Count() != want || s.Size() != int64(size) {
			t.Errorf("size %d: %d pieces, %d bytes; want %d pieces", size, s.Count(), s.Size(), want)
		}
		var stored [][]byte
		if err := s.Each(func(p []byte) error { stored = append(stored, bytes.Clone(p)); return nil }); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(spool.NewReader(len(stored), func(seq int) ([]byte, error) { return stored[seq], nil }))
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("size %d: read back %d bytes, %v", size, len(got), err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("size %d: %d files left behind", size, len(left))
		}
	}
}
