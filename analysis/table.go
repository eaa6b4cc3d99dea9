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

	"cbs/runfmt"
)

// The header layouts ReadTable accepts.
const (
	layoutSteps      = "batch_size,steps"
	layoutCurves     = "batch_size,tokens,loss"
	layoutReplicates = "batch_size,replicate,tokens,loss"
)

const layoutsAllowed = layoutSteps + " or " + layoutCurves + " or " + layoutReplicates

// ReadTable reads a plain CSV table from a trainer other than cbs. The first non-comment line is
// a header naming the columns, in one of three layouts:
//
//	batch_size,steps                  steps (optimizer steps, may be fractional) one batch size
//	                                  needed to reach one target loss; rows with the same
//	                                  batch_size are replicates
//	batch_size,tokens,loss            loss curves: the loss after a branch has consumed tokens
//	                                  tokens, one curve per batch size
//	batch_size,replicate,tokens,loss  loss curves with seed replicates: replicate labels the
//	                                  curve within its batch size, and every replicate of a batch
//	                                  size logs the same tokens marks
//
// batch_size and tokens are counts of tokens (plain numbers or 64Ki, 4M, ...); steps and loss are
// finite positive numbers; replicate is any non-empty label. Lines starting with # are comments.
// Curves are compared at equal tokens, so every batch size must log at a common tokens value. A
// malformed row is an error naming its line, column and value.
func ReadTable(r io.Reader, name string) (*Data, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty table: expected a header %s", name, layoutsAllowed)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i := range header {
		header[i] = strings.ToLower(strings.TrimSpace(header[i]))
	}
	layout := strings.Join(header, ",")
	line, _ := cr.FieldPos(0)
	if layout != layoutSteps && layout != layoutCurves && layout != layoutReplicates {
		return nil, fmt.Errorf("%s line %d: header %q: allowed %s", name, line, layout, layoutsAllowed)
	}
	d := &Data{Source: name}
	var rows []tableRow
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
		row := tableRow{line: line}
		for i, f := range rec {
			if header[i] == "replicate" {
				row.rep = strings.TrimSpace(f)
				if row.rep == "" {
					return nil, fmt.Errorf("%s line %d: column replicate = %q: must be a non-empty label, for example 0", name, line, f)
				}
				continue
			}
			v, err := tableValue(header[i], f)
			if err != nil {
				return nil, fmt.Errorf("%s line %d: column %s = %q: %v", name, line, header[i], f, err)
			}
			switch header[i] {
			case "batch_size":
				row.batch, row.batchField = v, f
			case "tokens":
				row.tokens, row.tokensField = v, f
			default: // steps or loss
				row.value = v
			}
		}
		if layout == layoutSteps {
			d.Steps = append(d.Steps, StepsPoint{Batch: row.batch, Steps: row.value})
			continue
		}
		rows = append(rows, row)
	}
	if layout == layoutSteps {
		if len(d.Steps) == 0 {
			return nil, fmt.Errorf("%s: header but no rows", name)
		}
		return d, nil
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: header but no rows", name)
	}
	d.Metric = "loss"
	groups, err := groupRows(rows, layout == layoutReplicates)
	if err != nil {
		return nil, fmt.Errorf("%s %w", name, err)
	}
	d.Groups = groups
	return d, nil
}

// tableRow is one loss-curve row, with the fields as written for error messages.
type tableRow struct {
	batch, tokens, value    float64
	batchField, tokensField string
	rep                     string
	line                    int
}

// groupRows turns rows into groups by batch size and replicates by label, in the order the labels
// first appear. With replicates, every replicate of a batch size must log the same marks, so
// that the mean curve of a batch size is a mean over all of its replicates at every mark rather
// than silently over fewer.
func groupRows(rows []tableRow, replicates bool) ([]Group, error) {
	first := map[float64]map[string]int{} // batch -> label -> order of first appearance
	for _, r := range rows {
		m := first[r.batch]
		if m == nil {
			m = map[string]int{}
			first[r.batch] = m
		}
		if _, ok := m[r.rep]; !ok {
			m[r.rep] = len(m)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.batch != b.batch {
			return a.batch < b.batch
		}
		if oa, ob := first[a.batch][a.rep], first[b.batch][b.rep]; oa != ob {
			return oa < ob
		}
		return a.tokens < b.tokens
	})
	var groups []Group
	var at [][][]int // per group, per replicate, the row of each mark
	for i, r := range rows {
		if i > 0 {
			p := rows[i-1]
			if p.batch == r.batch && p.rep == r.rep && p.tokens == r.tokens {
				if replicates {
					return nil, fmt.Errorf("line %d: batch_size %s, replicate %q, tokens %s repeats line %d", r.line, r.batchField, r.rep, r.tokensField, p.line)
				}
				return nil, fmt.Errorf("line %d: batch_size %v, tokens %v repeats line %d", r.line, r.batch, r.tokens, p.line)
			}
		}
		n := len(groups)
		if n == 0 || groups[n-1].Batch != r.batch {
			groups = append(groups, Group{Batch: r.batch})
			at = append(at, nil)
			n++
		}
		g := &groups[n-1]
		if len(g.Replicates) == 0 || rows[i-1].rep != r.rep {
			id, key := "b"+runfmt.FormatTokens(r.batch), ""
			if replicates {
				id += "-r" + r.rep
				key = r.rep
			}
			g.Replicates = append(g.Replicates, Replicate{ID: id, Key: key})
			at[n-1] = append(at[n-1], nil)
		}
		k := len(g.Replicates) - 1
		rep := &g.Replicates[k]
		rep.Tokens = append(rep.Tokens, r.tokens)
		rep.Loss = append(rep.Loss, r.value)
		at[n-1][k] = append(at[n-1][k], i)
	}
	if !replicates {
		return groups, nil
	}
	for gi := range groups {
		if err := sameMarks(rows, at[gi]); err != nil {
			return nil, err
		}
	}
	return groups, nil
}

// sameMarks checks that every replicate of a batch size (at: per replicate, its rows by
// ascending tokens) logs the marks of the first, naming the first row whose mark one replicate
// has and another lacks.
func sameMarks(rows []tableRow, at [][]int) error {
	missing := func(has, lacks []int, i int) error {
		r := rows[has[i]]
		return fmt.Errorf("line %d: column tokens = %q: replicate %q of batch_size %s logs this mark but replicate %q does not; every replicate of a batch size must log the same tokens",
			r.line, r.tokensField, r.rep, r.batchField, rows[lacks[0]].rep)
	}
	ref := at[0]
	for _, other := range at[1:] {
		i, j := 0, 0
		for i < len(ref) || j < len(other) {
			switch {
			case j == len(other) || (i < len(ref) && rows[ref[i]].tokens < rows[other[j]].tokens):
				return missing(ref, other, i)
			case i == len(ref) || rows[other[j]].tokens < rows[ref[i]].tokens:
				return missing(other, ref, j)
			default:
				i++
				j++
			}
		}
	}
	return nil
}

func tableValue(col, field string) (float64, error) {
	switch col {
	case "batch_size", "tokens":
		v, err := runfmt.ParseTokens(field)
		if err != nil {
			return 0, errors.New("not a token count (allowed: 65536, 64Ki, 4M)")
		}
		if col == "batch_size" && v <= 0 {
			return 0, errors.New("must be > 0")
		}
		return float64(v), nil
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
