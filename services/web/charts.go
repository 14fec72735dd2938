package web

import (
	"fmt"
	"html"
	"html/template"
	"strings"
)

// bar is one bar of a chart.
type bar struct {
	Label string
	Value int
	Note  string // e.g. the ISCMs behind the count
}

// barChart draws a horizontal bar chart as SVG. Every bar carries its
// number as text, so the chart reads without colour; the same numbers are
// in the table beside it.
func barChart(title string, bars []bar) template.HTML {
	const rowH, labelW, chartW, pad = 28, 260, 360, 8
	max := 1
	for _, b := range bars {
		if b.Value > max {
			max = b.Value
		}
	}
	h := len(bars)*rowH + 2*pad
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart" role="img" aria-labelledby="t%[1]s" viewBox="0 0 %[2]d %[3]d" width="%[2]d" height="%[3]d" xmlns="http://www.w3.org/2000/svg"><title id="t%[1]s">%[4]s</title>`,
		slugID(title), labelW+chartW+60, h, html.EscapeString(title))
	for i, b := range bars {
		y := pad + i*rowH
		w := 0
		if b.Value > 0 {
			w = b.Value * chartW / max
			if w < 2 {
				w = 2
			}
		}
		fmt.Fprintf(&sb, `<g><title>%s: %d%s</title>`, html.EscapeString(b.Label), b.Value, noteSuffix(b.Note))
		fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="end" class="label">%s</text>`, labelW-6, y+rowH/2+5, html.EscapeString(truncateLabel(b.Label, 34)))
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="%d" height="%d" class="bar"/>`, labelW, y+4, w, rowH-8)
		fmt.Fprintf(&sb, `<text x="%d" y="%d" class="value">%d</text></g>`, labelW+w+6, y+rowH/2+5, b.Value)
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String()) // every text above is escaped
}

func noteSuffix(n string) string {
	if n == "" {
		return ""
	}
	return " (" + html.EscapeString(n) + ")"
}

func truncateLabel(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func slugID(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	out := b.String()
	if len(out) > 24 {
		out = out[:24]
	}
	return out
}

// heatCell is one objective × ISCM cell: which ways address it.
type heatCell struct {
	Position, Plan, Activities bool
}

func (c heatCell) ways() int {
	n := 0
	for _, b := range []bool{c.Position, c.Plan, c.Activities} {
		if b {
			n++
		}
	}
	return n
}

func (c heatCell) letters() string {
	var s string
	if c.Position {
		s += "P"
	}
	if c.Plan {
		s += "A"
	}
	if c.Activities {
		s += "T"
	}
	return s
}

// heatMap draws the objectives × ISCMs matrix. Each cell's shade says how
// many ways address the objective, and its letters say which, so the map
// reads without colour.
func heatMap(title string, rows []string, cols []string, cells [][]heatCell) template.HTML {
	const cw, ch, left, top = 30, 20, 40, 130
	w, h := left+len(cols)*cw+10, top+len(rows)*ch+10
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="heatmap" role="img" aria-labelledby="hm" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg"><title id="hm">%s</title>`,
		w, h, w, h, html.EscapeString(title))
	for j, c := range cols {
		x := left + j*cw + cw/2
		fmt.Fprintf(&sb, `<text transform="translate(%d,%d) rotate(-60)" class="col">%s</text>`, x, top-6, html.EscapeString(truncateLabel(c, 22)))
	}
	for i, r := range rows {
		y := top + i*ch
		fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="end" class="row">%s</text>`, left-6, y+ch/2+4, html.EscapeString(r))
		for j := range cols {
			c := cells[i][j]
			fmt.Fprintf(&sb, `<g><title>%s × %s: %s</title><rect x="%d" y="%d" width="%d" height="%d" class="w%d"/>`,
				html.EscapeString(r), html.EscapeString(cols[j]), orDash(c.letters()), left+j*cw, y, cw-1, ch-1, c.ways())
			if l := c.letters(); l != "" {
				fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="middle" class="cell w%d">%s</text>`, left+j*cw+cw/2, y+ch/2+4, c.ways(), l)
			}
			sb.WriteString(`</g>`)
		}
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String()) // every text above is escaped
}

func orDash(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// meter is a small inline bar for tables.
func meter(v, max int) template.HTML {
	if max <= 0 {
		max = 1
	}
	w := v * 120 / max
	return template.HTML(fmt.Sprintf(`<svg class="meter" aria-hidden="true" width="124" height="12" xmlns="http://www.w3.org/2000/svg"><rect x="0" y="1" width="%d" height="10" class="bar"/></svg>`, w))
}
