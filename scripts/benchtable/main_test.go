package main

import (
	"errors"
	"slices"
	"testing"
)

func TestRunOrderPutsComparedRowsNextToTheirBase(t *testing.T) {
	rows := []row{
		{label: "UDP announce", store: open},
		{label: "HTTP announce, keep-alive", store: open},
		{label: "UDP announce, private (gazelle)", store: private},
		{label: "HTTP announce, keep-alive, private (gazelle)", store: private},
		{label: "UDP announce, redis cache", store: redisCache},
		{label: "opentracker (reference): UDP announce", store: opentracker},
		{label: "fixed answer (machine ceiling): HTTP announce, keep-alive", store: fixed},
		// Its open-mode row is not in the run (-only).
		{label: "fixed answer (machine ceiling): UDP scrape", store: fixed},
	}
	var got []string
	for _, r := range runOrder(rows) {
		got = append(got, r.label)
	}
	want := []string{
		"UDP announce",
		"UDP announce, private (gazelle)",
		"opentracker (reference): UDP announce",
		"HTTP announce, keep-alive",
		"HTTP announce, keep-alive, private (gazelle)",
		"fixed answer (machine ceiling): HTTP announce, keep-alive",
		"UDP announce, redis cache",
		"fixed answer (machine ceiling): UDP scrape",
	}
	if !slices.Equal(got, want) {
		t.Errorf("run order\n got %q\nwant %q", got, want)
	}
}

func rated(round int, perCPU float64) run {
	rep := &report{Server: &serverReport{ResponsesPerCPUSecond: perCPU}}
	return run{round: round, rep: rep}
}

// The comparison pairs the runs of one round: a machine that slowed down
// between rounds moves both sides of a pair, not the ratio.
func TestPairedRatiosCompareRunsOfTheSameRound(t *testing.T) {
	open := []run{rated(0, 300), rated(1, 200), rated(2, 240)}
	priv := []run{rated(0, 240), rated(1, 150), rated(2, 216)}
	got := pairedRatios(row{store: private}, priv, open)
	want := []float64{0.75, 0.8, 0.9}
	if !slices.Equal(got, want) {
		t.Errorf("private ÷ open by round = %v, want %v", got, want)
	}
	// Medians taken apart would give 216 ÷ 240 = 90 %.

	// opentracker and the ceiling read the other way round: how many
	// times faster chihaya is, and its share of the ceiling.
	ot := []run{rated(0, 100), rated(2, 80)}
	if got, want := pairedRatios(row{store: opentracker}, ot, open), []float64{3, 3}; !slices.Equal(got, want) {
		t.Errorf("chihaya ÷ opentracker = %v, want %v (round 1 has no opentracker run)", got, want)
	}
	failed := []run{rated(0, 400), {round: 1, err: errors.New("not ready")}}
	if got, want := pairedRatios(row{store: fixed}, failed, open), []float64{0.75}; !slices.Equal(got, want) {
		t.Errorf("chihaya ÷ ceiling = %v, want %v (a failed run has no rate)", got, want)
	}
}

func TestMedianIsTheMiddleRunOrTheRowsError(t *testing.T) {
	rep, err := median([]run{rated(0, 3), rated(1, 1), rated(2, 2)})
	if err != nil || cpuRate(rep) != 2 {
		t.Errorf("median = %v, %v; want the run at 2", rep, err)
	}
	notReady := errors.New("not ready")
	if _, err := median([]run{rated(0, 3), {round: 1, err: notReady}}); !errors.Is(err, notReady) {
		t.Errorf("median of a row that failed = %v, want its error", err)
	}
}
