package api

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/xuri/excelize/v2"

	projrecords "gcmtrack/projections/records"
	"gcmtrack/projections/reports"
)

func (s *Server) exportRoutes() {
	s.handle("GET /v1/exports/{name}", s.export)
}

// tableWriter is a CSV or XLSX sheet written a row at a time.
type tableWriter interface {
	Row(cells []string) error
	Close() error
}

type csvTable struct{ w *csv.Writer }

func (c csvTable) Row(cells []string) error { return c.w.Write(cells) }
func (c csvTable) Close() error             { c.w.Flush(); return c.w.Error() }

// xlsxTable streams rows into a worksheet; excelize spills them to a
// temporary file past its memory threshold, so a large export stays flat.
type xlsxTable struct {
	f   *excelize.File
	sw  *excelize.StreamWriter
	row int
	w   http.ResponseWriter
}

func (x *xlsxTable) Row(cells []string) error {
	x.row++
	vals := make([]any, len(cells))
	for i, c := range cells {
		vals[i] = c
	}
	cell, err := excelize.CoordinatesToCellName(1, x.row)
	if err != nil {
		return err
	}
	return x.sw.SetRow(cell, vals)
}

func (x *xlsxTable) Close() error {
	defer x.f.Close()
	if err := x.sw.Flush(); err != nil {
		return err
	}
	return x.f.Write(x.w)
}

// export serves /v1/exports/<records>.csv|.xlsx for every record type, with
// the list filters, and /v1/exports/figures.csv|.xlsx?cycle=YYYY.
func (s *Server) export(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	base, format, _ := strings.Cut(name, ".")
	if format != "csv" && format != "xlsx" {
		return problem(http.StatusNotFound, "not-found", "exports are <name>.csv or <name>.xlsx")
	}
	var rt *recordType
	for i := range recordTypes {
		if recordTypes[i].segment == base {
			rt = &recordTypes[i]
		}
	}
	if rt == nil && base != "figures" {
		return problem(http.StatusNotFound, "not-found", "no export named "+strconv.Quote(base)+": use a record type such as activities, or figures")
	}
	c, err := s.authorize(w, r, actRead, "")
	if err != nil {
		return err
	}
	var f projrecords.Filter
	var figs reports.Figures
	if rt != nil {
		if f, err = listFilter(r); err != nil {
			return err
		}
		f.Kind = rt.kind
		if err := s.awaitPosition(r, readModels...); err != nil {
			return err
		}
	} else {
		cycle, err := strconv.Atoi(r.URL.Query().Get("cycle"))
		if err != nil || cycle < 2000 || cycle > 2100 {
			return problem(http.StatusBadRequest, "bad-parameter", "cycle must be a reporting year such as 2018")
		}
		snap, err := s.snapshot(r)
		if err != nil {
			return err
		}
		figs = reports.ComputeFigures(snap, s.d.Catalog, cycle, c.scope())
	}
	var t tableWriter
	filename := base + "." + format
	w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		t = csvTable{csv.NewWriter(w)}
	} else {
		w.Header().Set("Content-Type", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
		xf := excelize.NewFile()
		sw, err := xf.NewStreamWriter("Sheet1")
		if err != nil {
			xf.Close()
			return err
		}
		t = &xlsxTable{f: xf, sw: sw, w: w}
	}
	if rt != nil {
		if err := t.Row(projrecords.ExportColumns); err != nil {
			return err
		}
		err = s.d.RecordsQ.Export(r.Context(), c.visibility(), f, t.Row)
	} else {
		err = figureRows(figs, t.Row)
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Headers are gone; all that is left is to stop and log.
		s.d.Logger.ErrorContext(r.Context(), "export failed midway", "export", name, "err", err)
	}
	return nil
}

// figureRows flattens the figures: one row per count, with its ISCMs.
func figureRows(f reports.Figures, row func([]string) error) error {
	rows := [][]string{{"cycle", "figure", "item", "count", "iscms", "counts"}}
	add := func(fig, item, counts string, c reports.Count) {
		rows = append(rows, []string{strconv.Itoa(f.Cycle), fig, item, strconv.Itoa(c.Count), strings.Join(c.ISCMs, " "), counts})
	}
	add("respondents", "questionnaire", "ISCMs with answers of the cycle", f.Respondents.Questionnaire)
	add("respondents", "interview", "ISCMs with answers of the cycle", f.Respondents.Interview)
	add("respondents", "all", "ISCMs with answers of the cycle", f.Respondents.All)
	add("figure_2", "yes", f.Figure2.Counts, f.Figure2.Yes)
	add("figure_2", "no", f.Figure2.Counts, f.Figure2.No)
	add("figure_2", "in_process", f.Figure2.Counts, f.Figure2.InProcess)
	add("figure_2", "without_position_planning_refinement", f.Figure2.Counts, f.Figure2.WithoutPositionRefining)
	for _, it := range f.Figure3.Themes {
		add("figure_3", "theme "+it.ID, f.Figure3.Counts, it.Count)
	}
	for _, it := range f.Figure3.Principles {
		add("figure_3", "principle "+it.ID, f.Figure3.Counts, it.Count)
	}
	for _, it := range f.Figure3.Objectives {
		add("figure_3", "objective "+it.ID, f.Figure3.Counts, it.Count)
	}
	for _, ans := range []string{"yes", "planned", "no", "not_known", "unanswered"} {
		sp := f.Figure4.ByAnswer[ans]
		add("figure_4", ans+" with position", f.Figure4.Counts, sp.WithPosition)
		add("figure_4", ans+" without position", f.Figure4.Counts, sp.WithoutPosition)
	}
	for _, ans := range []string{"yes", "no", "already_done", "not_known", "unanswered"} {
		add("figure_5", ans, f.Figure5.Counts, f.Figure5.ByAnswer[ans])
	}
	for _, fm := range f.Figure7.ByForm {
		add("figure_7", fm.Form, f.Figure7.Counts, fm.Count)
	}
	add("figure_8", "with_partnerships", f.Figure8.Counts, f.Figure8.WithPartnerships)
	for _, c := range f.Figure8.ByCategory {
		add("figure_8", c.Category, f.Figure8.Counts, c.Count)
	}
	for _, r := range rows {
		if err := row(r); err != nil {
			return fmt.Errorf("figures export: %w", err)
		}
	}
	return nil
}
