package web

import (
	"encoding/csv"
	"io"
	"net/http"
	"strconv"
	"strings"

	"gcmtrack/projections/reports"
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

// tableCSV serves the numbers of a progress view as CSV, as the page shows
// them (live or as of the date asked).
func (s *Server) tableCSV(view string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		u, err := s.current(r)
		if err != nil {
			return err
		}
		snap, _, err := s.snapshot(r)
		if err != nil {
			return err
		}
		var rows [][]string
		switch view {
		case "objectives":
			rows = append(rows, []string{"objective", "title", "position", "action_plan", "activities", "iscms", "member_states", "iscm_slugs"})
			for _, o := range reports.ComputeObjectives(snap, s.d.Catalog, u.scope()).Items {
				rows = append(rows, []string{strconv.Itoa(o.Objective), o.Title, strconv.Itoa(o.Position.Count), strconv.Itoa(o.ActionPlan.Count),
					strconv.Itoa(o.Activities.Count), strconv.Itoa(o.Any.Count), strconv.Itoa(o.MemberStates), strings.Join(o.Any.ISCMs, " ")})
			}
		case "states":
			rows = append(rows, []string{"state", "name", "iscm_memberships", "with_formal_position", "with_standard_agenda_item", "with_action_plan"})
			for _, st := range reports.ComputeStates(snap, s.d.Catalog, u.scope(), false).Items {
				rows = append(rows, []string{st.State, st.Name, strconv.Itoa(st.ISCMCount), strconv.Itoa(st.WithPosition), strconv.Itoa(st.WithAgendaItem), strconv.Itoa(st.WithActionPlan)})
			}
		default:
			rec := reports.ComputeRecommendations(snap, s.d.Catalog, u.scope())
			head := []string{"iscm"}
			for _, r := range rec.Recommendations {
				head = append(head, r.ID)
			}
			rows = append(rows, head)
			for _, i := range rec.ISCMs {
				row := []string{i.ISCM}
				for _, it := range i.Items {
					row = append(row, it.Status)
				}
				rows = append(rows, row)
			}
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+view+`.csv"`)
		cw := csv.NewWriter(w)
		if err := cw.WriteAll(rows); err != nil {
			return err
		}
		return cw.Error()
	}
}
