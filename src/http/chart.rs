//! Charts drawn on the server as inline SVG: a sparkline per player on the standings and a
//! points-over-time chart on a player's page. No script and no third-party code draws them;
//! colours come from the stylesheet (classes), so they follow dark mode.

use maud::{html, Markup};

/// Width and height of a sparkline's drawing space.
const SPARK: (f64, f64) = (100.0, 20.0);
/// Width and height of the history chart's drawing space (it scales to the page).
const CHART: (f64, f64) = (640.0, 200.0);
/// Room left of the history chart for the axis labels.
const LABEL_ROOM: f64 = 56.0;

/// Maps `values` onto `0..=height` (top is the largest), with zero included so the
/// sign of a total shows.
fn scale_y(values: &[i64], height: f64, pad: f64) -> impl Fn(i64) -> f64 {
    let low = values.iter().copied().min().unwrap_or(0).min(0);
    let high = values.iter().copied().max().unwrap_or(0).max(0);
    let span = (high - low).max(1) as f64;
    move |v| pad + (height - 2.0 * pad) * (high - v) as f64 / span
}

/// A player's running total after each of their last entries, as a small line with a
/// dashed zero line; empty for no entries.
pub(super) fn sparkline(totals: &[i64]) -> Markup {
    let (width, height) = SPARK;
    if totals.is_empty() {
        return html! {};
    }
    let y = scale_y(totals, height, 2.0);
    let step = width / (totals.len().max(2) - 1) as f64;
    let points: Vec<String> = totals
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, y(*v)))
        .collect();
    let mut points = points.join(" ");
    if totals.len() == 1 {
        // One entry: a flat line across.
        points = format!("0,{0:.1} {width},{0:.1}", y(totals[0]));
    }
    let last_negative = totals.last().is_some_and(|v| *v < 0);
    html! {
        svg.spark viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height)
            role="img" aria-label="points over the last entries" {
            line.zero x1="0" x2=(width) y1=(format!("{:.1}", y(0))) y2=(format!("{:.1}", y(0))) {}
            polyline.line.neg[last_negative] points=(points) {}
        }
    }
}

/// Total over time: one step per entry, a zero line, the highest and lowest total and the
/// first and last date as labels. `points` are `(unix ms, total after)` in replay order.
pub(super) fn history_chart(points: &[(u64, i64)], first: &str, last: &str) -> Markup {
    let (width, height) = CHART;
    if points.is_empty() {
        return html! {};
    }
    let totals: Vec<i64> = points.iter().map(|(_, total)| *total).collect();
    let y = scale_y(&totals, height - 20.0, 14.0);
    let plot = width - LABEL_ROOM;
    // Evenly spaced by entry, not by time: bursts of entries in one raid stay readable.
    // Each entry's total holds for one step, the last one up to the right edge.
    let step = plot / points.len() as f64;
    let x = |i: usize| LABEL_ROOM + i as f64 * step;
    let mut path = format!("M{:.1},{:.1}", x(0), y(0));
    for (i, total) in totals.iter().enumerate() {
        path.push_str(&format!(
            " L{:.1},{:.1} L{:.1},{:.1}",
            x(i),
            y(*total),
            x(i + 1),
            y(*total)
        ));
    }
    let high = totals.iter().copied().max().unwrap_or(0).max(0);
    let low = totals.iter().copied().min().unwrap_or(0).min(0);
    html! {
        svg.chart viewBox={ "0 0 " (width) " " (height) } preserveAspectRatio="xMidYMid meet"
            role="img" aria-label="points over time" {
            line.zero x1=(LABEL_ROOM) x2=(width) y1=(format!("{:.1}", y(0))) y2=(format!("{:.1}", y(0))) {}
            path.line.neg[totals.last().is_some_and(|v| *v < 0)] d=(path) {}
            text.axis x=(LABEL_ROOM - 6.0) y=(format!("{:.1}", y(high) + 4.0)) text-anchor="end" { (high) }
            @if low != high {
                text.axis x=(LABEL_ROOM - 6.0) y=(format!("{:.1}", y(low) + 4.0)) text-anchor="end" { (low) }
            }
            @if low != 0 && high != 0 {
                text.axis x=(LABEL_ROOM - 6.0) y=(format!("{:.1}", y(0) + 4.0)) text-anchor="end" { "0" }
            }
            text.axis x=(LABEL_ROOM) y=(height - 2.0) text-anchor="start" { (first) }
            text.axis x=(width) y=(height - 2.0) text-anchor="end" { (last) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_spans_the_box_and_marks_a_negative_end() {
        let svg = sparkline(&[0, 10, -5]).into_string();
        assert!(svg.contains("points=\"0.0,"), "{svg}");
        assert!(
            svg.contains(" 100.0,"),
            "last point at the right edge: {svg}"
        );
        assert!(svg.contains("class=\"line neg\""), "{svg}");
        assert!(sparkline(&[]).into_string().is_empty());
        let flat = sparkline(&[3]).into_string();
        assert!(flat.contains("points=\"0,"), "{flat}");
    }

    #[test]
    fn history_chart_labels_its_range_escaped() {
        let svg = history_chart(&[(1, 5), (2, -3)], "<first>", "last").into_string();
        assert!(
            svg.contains(">5</text>") && svg.contains(">-3</text>"),
            "{svg}"
        );
        assert!(svg.contains("&lt;first&gt;"), "{svg}");
        assert!(svg.starts_with("<svg"), "{svg}");
    }
}
