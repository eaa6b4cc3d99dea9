package analysis

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// ReadTable reads a plain CSV table from a trainer other than cbs. The first non-comment line is
// a header naming the columns, in either of two layouts:
//
//	batch_size,steps        steps (optimizer steps, may be fractional) one batch size needed to
//	                        reach one target loss; rows with the same batch_size are replicates
//	batch_size,tokens,loss  loss curves: the loss after a branch has consumed tokens tokens
//
// batch_size and tokens are counts of tokens (plain numbers or 64Ki, 4M, ...); steps and loss are
// finite positive numbers. Lines starting with # are comments. Curves are compared at equal
// tokens, so every batch size must log at a common tokens value. A malformed row is an error
// naming its line.
func ReadTable(r io.Reader, name string) (*Data, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty table: expected a header batch_size,steps or batch_size,tokens,loss", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i := range header {
		header[i] = strings.ToLower(strings.TrimSpace(header[i]))
	}
	layout := strings.Join(header, ",")
	line, _ := cr.FieldPos(0)
	if layout != "batch_size,steps" && layout != "batch_size,tokens,loss" {
		return nil, fmt.Errorf("%s line %d: header %q: allowed batch_size,steps or batch_size,tokens,loss", name, line, layout)
	}
	d := &Data{Source: name}
	type row struct {
		batch, tokens, loss float64
		line                int
	}
	var rows []row
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%s line %d: %v (expected %d columns: %s)", name, pe.Line, pe.Err, len(header), layout)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		vals := make([]float64, len(rec))
		for i, f := range rec {
			v, err := tableValue(header[i], f)
			if err != nil {
				return nil, fmt.Errorf("%s line %d: column %s = %q: %v", name, line, header[i], f, err)
			}
			vals[i] = v
		}
		if len(vals) == 2 {
			d.Steps = append(d.Steps, StepsPoint{Batch: vals[0], Steps: vals[1]})
			continue
		}
		rows = append(rows, row{batch: vals[0], tokens: vals[1], loss: vals[2], line: line})
	}
	if len(header) == 2 {
		if len(d.Steps) == 0 {
			return nil, fmt.Errorf("%s: header but no rows", name)
		}
		return d, nil
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: header but no rows", name)
	}
	d.Metric = "loss"
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].batch != rows[j].batch {
			return rows[i].batch < rows[j].batch
		}
		return rows[i].tokens < rows[j].tokens
	})
	for i, r := range rows {
		if i > 0 && rows[i-1].batch == r.batch && rows[i-1].tokens == r.tokens {
			return nil, fmt.Errorf("%s line %d: batch_size %v, tokens %v repeats line %d", name, r.line, r.batch, r.tokens, rows[i-1].line)
		}
		n := len(d.Groups)
		if n == 0 || d.Groups[n-1].Batch != r.batch {
			d.Groups = append(d.Groups, Group{Batch: r.batch, Replicates: []Replicate{{ID: "b" + FormatTokens(r.batch)}}})
			n++
		}
		rep := &d.Groups[n-1].Replicates[0]
		rep.Tokens = append(rep.Tokens, r.tokens)
		rep.Loss = append(rep.Loss, r.loss)
	}
	return d, nil
}

func tableValue(col, field string) (float64, error) {
	switch col {
	case "batch_size", "tokens":
		v, err := ParseTokens(field)
		if err != nil {
			return 0, errors.New("not a token count (allowed: 65536, 64Ki, 4M)")
		}
		if col == "batch_size" && v <= 0 {
			return 0, errors.New("must be > 0")
		}
		return v, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(field), 64)
	if err != nil {
		return 0, errors.New("not a number")
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0, errors.New("must be a finite number > 0")
	}
	return v, nil
}

// ReadTableFile is ReadTable on a file.
func ReadTableFile(path string) (*Data, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadTable(f, path)
}
