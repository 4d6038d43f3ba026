// Package spool keeps a large body in bounded, zstd-compressed pieces: written to a temp
// file as it arrives (Spool), handed to the store piece by piece in one short transaction,
// and read back piece by piece (NewReader). No step holds the whole body in memory: at most
// one raw piece and one compressed piece at a time.
//
// zstd (github.com/klauspost/compress, pure Go) shrinks Terra's JSON several times over at
// hundreds of MB/s per core, so a 30 MiB chunk costs a few MB of storage and a few tens of
// milliseconds; each piece is its own zstd frame, so a piece decodes without any other.
package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// PieceSize is the raw size of one piece (the last may be shorter).
const PieceSize = 1 << 20

// The codecs hold no configuration and no per-body state (EncodeAll and DecodeAll are safe
// for concurrent use): like a CRC table, they are shared rather than passed around. The
// decoder refuses a piece that would decode to more than PieceSize.
var (
	encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxMemory(PieceSize))
)

// Spool is a body being written to a temp file in compressed pieces. Close removes the file.
type Spool struct {
	f       *os.File
	raw     []byte  // the piece being filled
	scratch []byte  // the last compressed piece
	lens    []int64 // compressed length of each piece, in order
	size    int64   // raw bytes written
}

// New starts a spool in dir (the system's temp directory when empty).
func New(dir string) (*Spool, error) {
	f, err := os.CreateTemp(dir, "terragate-body-*.zst")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return &Spool{f: f, raw: make([]byte, 0, PieceSize)}, nil
}

// Write adds p to the body, compressing each full piece to the file.
func (s *Spool) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), PieceSize-len(s.raw))
		s.raw = append(s.raw, p[:k]...)
		p = p[k:]
		if len(s.raw) == PieceSize {
			if err := s.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	s.size += int64(n)
	return n, nil
}

func (s *Spool) flush() error {
	if len(s.raw) == 0 {
		return nil
	}
	s.scratch = encoder.EncodeAll(s.raw, s.scratch[:0])
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(len(s.scratch)))
	if _, err := s.f.Write(hdr[:]); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := s.f.Write(s.scratch); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.lens = append(s.lens, int64(len(s.scratch)))
	s.raw = s.raw[:0]
	return nil
}

// Finish compresses the last piece; call it once, after the last Write.
func (s *Spool) Finish() error { return s.flush() }

// Size is the number of raw bytes written.
func (s *Spool) Size() int64 { return s.size }

// Count is the number of pieces (after Finish).
func (s *Spool) Count() int { return len(s.lens) }

// Each hands each compressed piece, in order, to fn; the slice is reused after fn returns.
func (s *Spool) Each(fn func(piece []byte) error) error {
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	r := bufio.NewReader(s.f)
	var hdr [8]byte
	for range s.lens {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		n := binary.BigEndian.Uint64(hdr[:])
		if n > uint64(cap(s.scratch)) {
			s.scratch = make([]byte, n)
		}
		piece := s.scratch[:n]
		if _, err := io.ReadFull(r, piece); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if err := fn(piece); err != nil {
			return err
		}
	}
	return nil
}

// Close removes the temp file and frees the buffers.
func (s *Spool) Close() error {
	s.raw, s.scratch = nil, nil
	return errors.Join(s.f.Close(), os.Remove(s.f.Name()))
}

// NewReader reads a body kept as count compressed pieces, asking get for piece 0, 1, ...
// as the reader reaches it: at most one piece is held, compressed and raw.
func NewReader(count int, get func(seq int) ([]byte, error)) io.Reader {
	return &reader{count: count, get: get}
}

type reader struct {
	count, next int
	get         func(seq int) ([]byte, error)
	buf         []byte // the raw piece being read
	rest        []byte // what of it is not read yet
	err         error
}

func (r *reader) Read(p []byte) (int, error) {
	for len(r.rest) == 0 && r.err == nil {
		if r.next == r.count {
			r.err = io.EOF
			break
		}
		piece, err := r.get(r.next)
		if err != nil {
			r.err = fmt.Errorf("spool: piece %d: %w", r.next, err)
			break
		}
		r.buf, err = decoder.DecodeAll(piece, r.buf[:0])
		if err != nil {
			r.err = fmt.Errorf("spool: piece %d: %w", r.next, err)
			break
		}
		r.rest = r.buf
		r.next++
	}
	if len(r.rest) == 0 {
		return 0, r.err
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}
