package web

import (
	"encoding/csv"
	"io"
	"strconv"
)

// writeChartsCSV writes every chart's bars: chart, label, value, ISCMs.
func writeChartsCSV(w io.Writer, charts []figureChart) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"chart", "label", "value", "iscms"}); err != nil {
		return err
	}
	for _, c := range charts {
		for _, b := range c.Bars {
			if err := cw.Write([]string{c.Title, b.Label, strconv.Itoa(b.Value), b.Note}); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
