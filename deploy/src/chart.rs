//! Charts of a scenario's report as SVG, written as text: no plotting
//! library and no fonts are needed (the viewer draws the text).
//!
//! [`latency`] plots every success's latency against time on a log scale
//! (ping losses as crosses along the top); [`deliveries`] plots successes
//! per second, window by window. Both mark each fault with a vertical line
//! and its command.

use std::fmt::Write as _;

use crate::report::{Report, WorkloadReport, is_success, secs};
use crate::workload::{Event, EventKind};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
];

/// How a series is drawn.
enum Style {
    /// A dot per point.
    Dots,
    /// A line through the points.
    Line,
}

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    style: Style,
}

struct Chart<'a> {
    title: String,
    y_label: &'a str,
    x_max: f64,
    /// log10 scale from `y_min` to `y_max`, else linear from 0.
    log_y: bool,
    y_min: f64,
    y_max: f64,
    series: Vec<Series>,
    /// Points drawn as red crosses along the top.
    misses: Vec<f64>,
    markers: Vec<(f64, String)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Chart<'_> {
    fn x(&self, x: f64) -> f64 {
        LEFT + (x / self.x_max).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, y: f64) -> f64 {
        let f = if self.log_y {
            (y.max(self.y_min).log10() - self.y_min.log10())
                / (self.y_max.log10() - self.y_min.log10())
        } else {
            y / self.y_max
        };
        HEIGHT - BOTTOM - f.clamp(0.0, 1.0) * (HEIGHT - TOP - BOTTOM)
    }

    fn ticks_y(&self) -> Vec<f64> {
        if self.log_y {
            let mut t = Vec::new();
            let mut v = self.y_min;
            while v <= self.y_max * 1.0001 {
                t.push(v);
                v *= 10.0;
            }
            t
        } else {
            let step = nice_step(self.y_max / 5.0);
            (0..=10)
                .map(|i| f64::from(i) * step)
                .take_while(|v| *v <= self.y_max * 1.0001)
                .collect()
        }
    }

    fn render(&self) -> String {
        let mut s = String::new();
        let (x0, x1) = (LEFT, WIDTH - RIGHT);
        let (y0, y1) = (HEIGHT - BOTTOM, TOP);
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            (x0 + x1) / 2.0,
            escape(&self.title)
        );
        // Axes, ticks and grid.
        let _ = writeln!(
            s,
            r#"<path d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" stroke="black" fill="none"/>"#
        );
        let step = nice_step(self.x_max / 10.0);
        let mut t = 0.0;
        while t <= self.x_max * 1.0001 {
            let x = self.x(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{}" stroke="#000"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                y0 + 4.0,
                y0 + 17.0,
                trim(t)
            );
            t += step;
        }
        for v in self.ticks_y() {
            let y = self.y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 - 5.0,
                y + 4.0,
                trim(v)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">time since the start (s)</text>"#,
            (x0 + x1) / 2.0,
            HEIGHT - 12.0
        );
        let _ = writeln!(
            s,
            r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0,
            escape(self.y_label)
        );
        // Faults.
        for (i, (at, label)) in self.markers.iter().enumerate() {
            let x = self.x(*at);
            #[allow(clippy::cast_precision_loss)]
            let ly = y1 + 14.0 + (i % 4) as f64 * 14.0;
            let _ = writeln!(
                s,
                r##"<line class="fault" x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{y0}" stroke="#d62728" stroke-dasharray="4,3"/><text x="{:.1}" y="{ly:.1}" fill="#d62728">{}</text>"##,
                x + 3.0,
                escape(label)
            );
        }
        // Series and legend.
        for (i, series) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            match series.style {
                Style::Dots => {
                    let _ = write!(s, r#"<g class="series" fill="{colour}">"#);
                    for (x, y) in &series.points {
                        let _ = write!(
                            s,
                            r#"<circle cx="{:.1}" cy="{:.1}" r="1.8"/>"#,
                            self.x(*x),
                            self.y(*y)
                        );
                    }
                    let _ = writeln!(s, "</g>");
                }
                Style::Line => {
                    let path: Vec<String> = series
                        .points
                        .iter()
                        .map(|(x, y)| format!("{:.1},{:.1}", self.x(*x), self.y(*y)))
                        .collect();
                    if !path.is_empty() {
                        let _ = writeln!(
                            s,
                            r#"<polyline class="series" points="{}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#,
                            path.join(" ")
                        );
                    }
                }
            }
            #[allow(clippy::cast_precision_loss)]
            let ly = y1 + 10.0 + i as f64 * 18.0;
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{ly}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
                x1 + 15.0,
                x1 + 32.0,
                ly + 10.0,
                escape(&series.name)
            );
        }
        if !self.misses.is_empty() {
            let _ = write!(s, r##"<g class="misses" stroke="#d62728">"##);
            for x in &self.misses {
                let (cx, cy) = (self.x(*x), y1 + 4.0);
                let _ = write!(
                    s,
                    r#"<path d="M{:.1},{:.1} l6,6 m0,-6 l-6,6"/>"#,
                    cx - 3.0,
                    cy - 3.0
                );
            }
            let _ = writeln!(s, "</g>");
            #[allow(clippy::cast_precision_loss)]
            let ly = y1 + 10.0 + self.series.len() as f64 * 18.0;
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" fill="#d62728">x ping lost</text>"##,
                x1 + 15.0,
                ly + 10.0
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// A number without a useless fraction.
fn trim(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}").trim_end_matches('0').to_owned()
    }
}

fn markers(report: &Report) -> Vec<(f64, String)> {
    report
        .faults
        .iter()
        .map(|f| (f.at_s, f.action.clone()))
        .collect()
}

fn x_max(report: &Report) -> f64 {
    let last = report
        .workloads
        .iter()
        .filter_map(|w| w.windows.last())
        .map(|w| w.start_s + report.window_s)
        .fold(report.duration_s, f64::max);
    last.max(1.0)
}

/// Latency against time: one dot per success (log scale, ms).
pub fn latency(report: &Report, events: &[(&WorkloadReport, &[Event])]) -> String {
    let start = report.start_unix_us;
    let mut series = Vec::new();
    let mut misses = Vec::new();
    let mut highest: f64 = 1.0;
    for (w, evs) in events {
        let points: Vec<(f64, f64)> = evs
            .iter()
            .filter(|e| is_success(e))
            .filter_map(|e| {
                #[allow(clippy::cast_precision_loss)]
                let l = e.latency_us? as f64 / 1e3;
                Some((secs(start, e.t_us), l))
            })
            .collect();
        highest = points.iter().map(|p| p.1).fold(highest, f64::max);
        misses.extend(
            evs.iter()
                .filter(|e| e.kind == EventKind::Lost)
                .map(|e| secs(start, e.t_us)),
        );
        series.push(Series {
            name: format!("{} ({:?})", w.name, w.kind).to_lowercase(),
            points,
            style: Style::Dots,
        });
    }
    let y_max = 10f64.powf(highest.log10().ceil()).max(10.0);
    Chart {
        title: format!("Latency over time: {}", report.scenario),
        y_label: "latency (ms, log scale)",
        x_max: x_max(report),
        log_y: true,
        y_min: 0.1,
        y_max,
        series,
        misses,
        markers: markers(report),
    }
    .render()
}

/// Successes per second, window by window.
pub fn deliveries(report: &Report) -> String {
    let mut highest: f64 = 1.0;
    let series: Vec<Series> = report
        .workloads
        .iter()
        .map(|w| {
            let points: Vec<(f64, f64)> = w
                .windows
                .iter()
                .map(|win| {
                    #[allow(clippy::cast_precision_loss)]
                    let rate = win.count as f64 / report.window_s;
                    (win.start_s + report.window_s / 2.0, rate)
                })
                .collect();
            highest = points.iter().map(|p| p.1).fold(highest, f64::max);
            Series {
                name: format!("{} ({:?})", w.name, w.kind).to_lowercase(),
                points,
                style: Style::Line,
            }
        })
        .collect();
    Chart {
        title: format!("Deliveries per second: {}", report.scenario),
        y_label: "acks, records or pongs per second",
        x_max: x_max(report),
        log_y: false,
        y_min: 0.0,
        y_max: nice_step(highest * 1.1 / 5.0) * 5.0,
        series,
        misses: Vec::new(),
        markers: markers(report),
    }
    .render()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::report::{FaultRecord, Inputs, WorkloadKind, WorkloadLog, build};

    #[test]
    fn charts_hold_the_series_the_faults_and_escaped_text() {
        let t0 = 5_000_000;
        let events: Vec<Event> = (0..50)
            .map(|i| Event {
                t_us: t0 + i * 100_000,
                kind: if i == 20 {
                    EventKind::Lost
                } else {
                    EventKind::Pong
                },
                seqno: Some(i),
                latency_us: (i != 20).then_some(1_000 + i * 10),
                message: None,
            })
            .collect();
        let logs = vec![WorkloadLog {
            name: "p<1>".into(),
            kind: WorkloadKind::Ping,
            host: "c".into(),
            peer: "r1".into(),
            events: events.clone(),
        }];
        let faults = vec![FaultRecord {
            action: "cut lan".into(),
            planned: Duration::from_secs(2),
            t_us: t0 + 2_000_000,
            result: Ok("cut".into()),
            healed_by: None,
        }];
        let inputs = Inputs {
            scenario: "a&b.toml".into(),
            start_us: t0,
            duration: Duration::from_secs(5),
            drain: Duration::ZERO,
            window: Duration::from_secs(1),
        };
        let report = build(&inputs, &logs, &faults, BTreeMap::new());
        let svg = latency(&report, &[(&report.workloads[0], &events)]);
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 49);
        assert_eq!(svg.matches("class=\"fault\"").count(), 1);
        assert!(svg.contains(">cut lan</text>"));
        assert!(svg.contains("a&amp;b.toml"));
        assert!(svg.contains("p&lt;1&gt; (ping)"));
        assert!(svg.contains("x ping lost"));
        let svg = deliveries(&report);
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("class=\"fault\""));
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(30.0), 50.0);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(trim(2.0), "2");
        assert_eq!(trim(0.5), "0.5");
    }
}
