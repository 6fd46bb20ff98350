package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The generator describes dashboards with the small spec types below and turns them into the
// SDK's classic dashboard model. The classic model (dashboard.NewDashboardBuilder) is marked
// deprecated in favour of dashboardv2, but v2 is not what Grafana file provisioning loads from a
// ConfigMap-mounted folder, so the classic builder is the right one here.

type dashboardSpec struct {
	uid, title, file, description string
	tags                          []string
	variables                     []Variable
	rows                          []rowSpec
}

type rowSpec struct {
	id     uint32
	title  string
	panels []panelSpec
	// collapsed rows start folded, their panels inside the row (Grafana's classic model): for
	// what a stock kubebuilder operator never fills (no webhook, no leader election unless asked
	// for), so that a new user sees no empty panels and one click opens them.
	collapsed bool
}

type panelKind string

const (
	kindTimeseries panelKind = "timeseries"
	kindStat       panelKind = "stat"
	kindHeatmap    panelKind = "heatmap"
	kindTable      panelKind = "table"
)

type panelSpec struct {
	id          uint32
	kind        panelKind
	title       string
	description string
	unit        string
	w, h        uint32
	min, max    *float64
	targets     []Target
	// columns renames and formats the columns of a table panel ("Value #A" -> name, unit).
	columns []column
	// cellUnit is the unit of a heatmap's cell values.
	cellUnit string
}

type column struct {
	refID, name, unit string
}

func f64(v float64) *float64 { return &v }

func dsRef() common.DataSourceRef {
	t, uid := "prometheus", "${datasource}"
	return common.DataSourceRef{Type: &t, Uid: &uid}
}

func (s dashboardSpec) build() (Dashboard, error) {
	//lint:ignore SA1019 the classic dashboard model is what Grafana file provisioning loads; dashboardv2 is not.
	b := dashboard.NewDashboardBuilder(s.title).
		Uid(s.uid).
		Description(s.description).
		Tags(s.tags).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Time("now-1h", "now").
		Refresh("30s").
		Timezone("browser")

	b.WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
		Label("Data source").
		Type("prometheus").
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr(DatasourceUID)},
			Value: dashboard.StringOrArrayOfString{String: cog.ToPtr(DatasourceUID)},
		}))
	for _, v := range s.variables {
		q := v.Query
		vb := dashboard.NewQueryVariableBuilder(v.Name).
			Label(v.Name).
			Query(dashboard.StringOrMap{String: &q}).
			Definition(q).
			Datasource(dsRef()).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(v.Multi).
			IncludeAll(v.IncludeAll)
		if v.IncludeAll {
			vb = vb.AllValue(v.AllValue).Current(dashboard.VariableOption{
				Text:  dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
				Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
			})
		}
		b.WithVariable(vb)
	}

	out := Dashboard{UID: s.uid, Title: s.title, File: s.file, Variables: s.variables}
	for _, r := range s.rows {
		row := dashboard.NewRowBuilder(r.title).Id(r.id).Collapsed(r.collapsed)
		var panels []cog.Builder[dashboard.Panel]
		for _, p := range r.panels {
			pb, err := p.builder()
			if err != nil {
				return Dashboard{}, fmt.Errorf("panel %d %q: %w", p.id, p.title, err)
			}
			panels = append(panels, pb)
			out.Panels = append(out.Panels, Panel{ID: p.id, Title: p.title, Type: string(p.kind), Unit: p.unit, Targets: p.targets})
		}
		if r.collapsed {
			for _, pb := range panels {
				row.WithPanel(pb)
			}
			b.WithRow(row)
			continue
		}
		b.WithRow(row)
		for _, pb := range panels {
			b.WithPanel(pb)
		}
	}
	model, err := b.Build()
	if err != nil {
		return Dashboard{}, err
	}
	out.JSON, err = marshal(model)
	return out, err
}

func (p panelSpec) queries() ([]cog.Builder[variants.Dataquery], error) {
	var qs []cog.Builder[variants.Dataquery]
	for _, t := range p.targets {
		if t.RefID == "" || t.Expr == "" || t.LegendFormat == "" {
			return nil, fmt.Errorf("target %q needs a refId, an expression and a legend", t.Expr)
		}
		q := prometheus.NewDataqueryBuilder().
			Datasource(dsRef()).
			RefId(t.RefID).
			Expr(t.Expr).
			LegendFormat(t.LegendFormat).
			EditorMode(prometheus.QueryEditorModeCode)
		switch t.Format {
		case "table":
			q = q.Format(prometheus.PromQueryFormatTable)
		case "heatmap":
			q = q.Format(prometheus.PromQueryFormatHeatmap)
		default:
			q = q.Format(prometheus.PromQueryFormatTimeSeries)
		}
		if t.Instant {
			q = q.Instant()
		} else {
			q = q.Range()
		}
		qs = append(qs, q)
	}
	return qs, nil
}

func (p panelSpec) builder() (cog.Builder[dashboard.Panel], error) {
	if p.unit == "" {
		return nil, fmt.Errorf("no unit")
	}
	qs, err := p.queries()
	if err != nil {
		return nil, err
	}
	w, h := p.w, p.h
	if w == 0 {
		w = 8
	}
	if h == 0 {
		h = 8
	}
	switch p.kind {
	case kindTimeseries:
		b := timeseries.NewPanelBuilder().Id(p.id).Title(p.title).Description(p.description).
			Datasource(dsRef()).Targets(qs).Unit(p.unit).Span(w).Height(h).
			FillOpacity(10).LineWidth(1).ShowPoints(common.VisibilityModeNever).
			Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNone)).
			Legend(common.NewVizLegendOptionsBuilder().ShowLegend(true).
				DisplayMode(common.LegendDisplayModeTable).Placement(common.LegendPlacementBottom).
				Calcs([]string{"mean", "lastNotNull", "max"})).
			Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
		if p.min != nil {
			b = b.Min(*p.min)
		}
		if p.max != nil {
			b = b.Max(*p.max)
		}
		return b, nil
	case kindStat:
		b := stat.NewPanelBuilder().Id(p.id).Title(p.title).Description(p.description).
			Datasource(dsRef()).Targets(qs).Unit(p.unit).Span(w).Height(h).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)).
			GraphMode(common.BigValueGraphModeArea).
			TextMode(common.BigValueTextModeValueAndName).
			Orientation(common.VizOrientationAuto)
		if p.min != nil {
			b = b.Min(*p.min)
		}
		if p.max != nil {
			b = b.Max(*p.max)
		}
		return b, nil
	case kindHeatmap:
		if p.cellUnit == "" {
			return nil, fmt.Errorf("heatmap without a cell unit")
		}
		return heatmap.NewPanelBuilder().Id(p.id).Title(p.title).Description(p.description).
			Datasource(dsRef()).Targets(qs).Unit(p.unit).Span(w).Height(h).
			Calculate(false).
			YAxis(heatmap.NewYAxisConfigBuilder().Unit(p.unit)).
			CellValues(heatmap.NewCellValuesBuilder().Unit(p.cellUnit)).
			RowsFrame(heatmap.NewRowsHeatmapOptionsBuilder().Layout(common.HeatmapCellLayoutAuto)).
			Color(heatmap.NewHeatmapColorOptionsBuilder().Mode(heatmap.HeatmapColorModeScheme).
				Scheme("Spectral").Scale(heatmap.HeatmapColorScaleExponential).Exponent(0.5).Steps(64)).
			Tooltip(heatmap.NewHeatmapTooltipBuilder().Mode(common.TooltipDisplayModeSingle).YHistogram(true)).
			ShowLegend(), nil
	case kindTable:
		b := table.NewPanelBuilder().Id(p.id).Title(p.title).Description(p.description).
			Datasource(dsRef()).Targets(qs).Unit(p.unit).Span(w).Height(h).
			WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}})
		for _, c := range p.columns {
			if c.unit == "" {
				return nil, fmt.Errorf("column %q has no unit", c.name)
			}
			b = b.OverrideByName("Value #"+c.refID, []dashboard.DynamicConfigValue{
				{Id: "displayName", Value: c.name},
				{Id: "unit", Value: c.unit},
			})
		}
		b = b.OverrideByName("Time", []dashboard.DynamicConfigValue{{Id: "custom.hidden", Value: true}})
		return b, nil
	}
	return nil, fmt.Errorf("unknown panel kind %q", p.kind)
}
