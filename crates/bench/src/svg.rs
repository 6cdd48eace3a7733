//! The report as a picture, written by hand as SVG text so that no plotting
//! tool is needed: one panel of replies/s bars per row (each with its own
//! scale, since rows differ by 20x), then the ping rows' p50/p99 RTT, then
//! the find-rate curve (p99 against the offered rate, both on log scales).

use std::fmt::Write as _;

use crate::load::{CurvePoint, Load, Row, Server};
use crate::report::{Line, fmt_count, fmt_ratio, fmt_us};

const WIDTH: u32 = 980;
const LABEL_RIGHT: u32 = 270;
const BAR_LEFT: u32 = 280;
const BAR_MAX: f64 = 520.0;
const BAR_HEIGHT: u32 = 18;
const BAR_STEP: u32 = 24;

fn color(server: Server) -> &'static str {
    match server {
        Server::Upcase => "#d9480f",
        Server::UpcaseBusyPoll => "#f08c00",
        Server::UpcaseGro => "#e8590c",
        Server::UpcaseMetrics => "#f76707",
        Server::UpcasePortable => "#a61e4d",
        Server::CRecvmmsg => "#1c7ed6",
        Server::CPlain => "#74c0fc",
        Server::Python => "#37b24d",
        Server::CGro => "#7048e8",
        Server::CTcp => "#1098ad",
        Server::Other => "#a61e4d",
    }
}

pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn label(line: &Line) -> String {
    match line.load {
        Load::Loadgen if line.row != Row::ClientVsLoadgen => line.server_name.clone(),
        load => format!("{} ← {}", line.server_name, load.name()),
    }
}

fn text(svg: &mut String, x: u32, y: u32, anchor: &str, style: &str, content: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{x}" y="{y}" text-anchor="{anchor}" {style}>{}</text>"#,
        escape(content)
    );
}

fn bar(svg: &mut String, y: u32, width: f64, fill: &str, opacity: f64) {
    let _ = writeln!(
        svg,
        r#"<rect x="{BAR_LEFT}" y="{y}" width="{:.1}" height="{BAR_HEIGHT}" fill="{fill}" fill-opacity="{opacity}"/>"#,
        width.max(1.0)
    );
}

/// The whole picture; `subtitle` says where and how it was measured.
pub(crate) fn render(lines: &[Line], subtitle: &str) -> String {
    let mut body = String::new();
    let mut y = 70;
    let bold = r#"font-weight="bold""#;
    for row in Row::ALL {
        let in_row: Vec<&Line> = lines.iter().filter(|l| l.row == row).collect();
        if in_row.is_empty() {
            continue;
        }
        let unit = if row == Row::FindRate {
            "highest rate that passed, requests/s"
        } else {
            "replies/s"
        };
        text(
            &mut body,
            20,
            y,
            "start",
            bold,
            &format!("{}: {unit}", row.title()),
        );
        y += 10;
        let max = in_row
            .iter()
            .filter_map(|l| l.replies_per_s)
            .fold(0.0, f64::max);
        for line in in_row {
            let label_y = y + BAR_HEIGHT - 5;
            text(&mut body, LABEL_RIGHT, label_y, "end", "", &label(line));
            match line.replies_per_s {
                Some(value) if max > 0.0 => {
                    let width = value / max * BAR_MAX;
                    let opacity = if line.load == Load::Client { 0.6 } else { 1.0 };
                    bar(&mut body, y, width, color(line.server), opacity);
                    let value_x = BAR_LEFT + width as u32 + 6;
                    let caption = match line.ratio {
                        Some(_) => format!(
                            "{} ({} of C)",
                            fmt_count(Some(value)),
                            fmt_ratio(line.ratio)
                        ),
                        None => fmt_count(Some(value)),
                    };
                    text(&mut body, value_x, label_y, "start", "", &caption);
                }
                _ => text(
                    &mut body,
                    BAR_LEFT,
                    label_y,
                    "start",
                    r##"fill="#c92a2a""##,
                    "failed",
                ),
            }
            y += BAR_STEP;
        }
        y += 22;
    }
    let ping: Vec<&Line> = lines
        .iter()
        .filter(|l| matches!(l.row, Row::Ping | Row::TcpPing))
        .filter(|l| l.p50_us.is_some() || l.p99_us.is_some())
        .collect();
    if !ping.is_empty() {
        text(
            &mut body,
            20,
            y,
            "start",
            bold,
            "ping RTT, µs: p50 (solid), p99 (light)",
        );
        y += 10;
        let max = ping
            .iter()
            .filter_map(|l| l.p99_us.or(l.p50_us))
            .fold(0.0, f64::max);
        for line in ping {
            for (name, value, opacity) in [("p50", line.p50_us, 1.0), ("p99", line.p99_us, 0.45)] {
                let label_y = y + BAR_HEIGHT - 5;
                let transport = if line.row == Row::TcpPing { " TCP" } else { "" };
                let caption = format!("{}{transport} {name}", line.server_name);
                text(&mut body, LABEL_RIGHT, label_y, "end", "", &caption);
                if let Some(v) = value.filter(|_| max > 0.0) {
                    let width = v / max * BAR_MAX;
                    bar(&mut body, y, width, color(line.server), opacity);
                    let value_x = BAR_LEFT + width as u32 + 6;
                    text(
                        &mut body,
                        value_x,
                        label_y,
                        "start",
                        "",
                        &format!("{} µs", fmt_us(Some(v))),
                    );
                }
                y += BAR_STEP;
            }
        }
        y += 12;
    }
    y = curve(&mut body, lines, y);
    let height = y + 10;
    let mut svg = String::new();
    let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    text(
        &mut svg,
        20,
        28,
        "start",
        r#"font-size="18" font-weight="bold""#,
        "upcase benchmark",
    );
    text(&mut svg, 20, 48, "start", r##"fill="#555""##, subtitle);
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    svg
}

/// The plot area of the find-rate curve.
const PLOT_LEFT: f64 = 90.0;
const PLOT_WIDTH: f64 = 800.0;
const PLOT_HEIGHT: f64 = 220.0;

/// Decades from `low` to `high` (each at least 1): the axis of a log scale.
fn decades(low: f64, high: f64) -> (f64, f64) {
    let low = low.max(1.0).log10().floor();
    let high = high.max(1.0).log10().ceil().max(low + 1.0);
    (low, high)
}

/// The find-rate panel at `top`: one line per server and run through its
/// steps in order of rate, filled dots for steps that passed, rings for
/// those that failed; returns where the next panel goes.
fn curve(svg: &mut String, lines: &[Line], top: u32) -> u32 {
    let curves: Vec<(&Line, Vec<&CurvePoint>)> = lines
        .iter()
        .filter(|l| l.row == Row::FindRate)
        .flat_map(|l| {
            l.samples.iter().map(move |s| {
                let mut points: Vec<&CurvePoint> =
                    s.curve.iter().filter(|p| p.p99_us.is_some()).collect();
                points.sort_by_key(|p| p.offered_per_s);
                (l, points)
            })
        })
        .filter(|(_, points)| !points.is_empty())
        .collect();
    let all = || curves.iter().flat_map(|(_, points)| points.iter());
    let (Some(rate_low), Some(rate_high)) = (
        all().map(|p| p.offered_per_s).min(),
        all().map(|p| p.offered_per_s).max(),
    ) else {
        return top;
    };
    let p99 = |p: &CurvePoint| p.p99_us.unwrap_or(1.0);
    let p99_low = all().map(|p| p99(p)).fold(f64::INFINITY, f64::min);
    let p99_high = all().map(|p| p99(p)).fold(0.0, f64::max);
    let (x0, x1) = decades(rate_low as f64, rate_high as f64);
    let (y0, y1) = decades(p99_low, p99_high);
    let plot_top = f64::from(top) + 20.0;
    let x = |rate: f64| PLOT_LEFT + (rate.max(1.0).log10() - x0) / (x1 - x0) * PLOT_WIDTH;
    let y = |us: f64| plot_top + PLOT_HEIGHT - (us.max(1.0).log10() - y0) / (y1 - y0) * PLOT_HEIGHT;
    text(
        svg,
        20,
        top,
        "start",
        r#"font-weight="bold""#,
        "find-rate: p99 round trip (µs, from the intended send) against the offered rate \
         (requests/s); rings: steps that failed",
    );
    let bottom = plot_top + PLOT_HEIGHT;
    let _ = writeln!(
        svg,
        r##"<rect x="{PLOT_LEFT}" y="{plot_top:.1}" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" fill="none" stroke="#adb5bd"/>"##
    );
    for decade in (x0 as i32)..=(x1 as i32) {
        let at = x(10f64.powi(decade));
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.1}" y1="{plot_top:.1}" x2="{at:.1}" y2="{bottom:.1}" stroke="#e9ecef"/>"##
        );
        let label = fmt_count(Some(10f64.powi(decade)));
        text(svg, at as u32, bottom as u32 + 16, "middle", "", &label);
    }
    for decade in (y0 as i32)..=(y1 as i32) {
        let at = y(10f64.powi(decade));
        let _ = writeln!(
            svg,
            r##"<line x1="{PLOT_LEFT}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="#e9ecef"/>"##,
            PLOT_LEFT + PLOT_WIDTH
        );
        let label = fmt_count(Some(10f64.powi(decade)));
        text(svg, PLOT_LEFT as u32 - 6, at as u32 + 4, "end", "", &label);
    }
    let mut named = Vec::new();
    for (line, points) in &curves {
        let fill = color(line.server);
        let path: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.offered_per_s as f64), y(p99(p))))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{fill}" stroke-width="1.5"/>"#,
            path.join(" ")
        );
        for p in points {
            let (cx, cy) = (x(p.offered_per_s as f64), y(p99(p)));
            let dot = if p.passed {
                format!(r#"fill="{fill}""#)
            } else {
                format!(r#"fill="white" stroke="{fill}" stroke-width="1.5""#)
            };
            let _ = writeln!(svg, r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="3.5" {dot}/>"#);
        }
        if !named.contains(&line.server) {
            named.push(line.server);
        }
    }
    let mut legend_y = bottom as u32 + 36;
    for server in named {
        let found = lines
            .iter()
            .find(|l| l.row == Row::FindRate && l.server == server)
            .and_then(|l| l.replies_per_s);
        let _ = writeln!(
            svg,
            r#"<rect x="{PLOT_LEFT}" y="{}" width="14" height="4" fill="{}"/>"#,
            legend_y - 6,
            color(server)
        );
        let caption = format!(
            "{}: {} requests/s passed (median over runs)",
            server.name(),
            fmt_count(found)
        );
        text(svg, PLOT_LEFT as u32 + 20, legend_y, "start", "", &caption);
        legend_y += 18;
    }
    legend_y + 10
}

/// Checks that `xml` is well-formed as far as this file's SVG needs: one
/// root element, tags nested and closed, quoted attributes, and `&` only in
/// entities. A stand-in for a renderer when none is installed.
pub(crate) fn check_well_formed(xml: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open])?;
        if stack.is_empty() && !rest[..open].trim().is_empty() {
            return Err("text outside the root element".into());
        }
        rest = &rest[open..];
        if let Some(after) = rest.strip_prefix("<?") {
            let end = after.find("?>").ok_or("unterminated <?...?>")?;
            rest = &after[end + 2..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("unterminated comment")?;
            rest = &after[end + 3..];
            continue;
        }
        let end = tag_end(rest).ok_or("unterminated tag")?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim();
            match stack.pop() {
                Some(open) if open == name => {}
                Some(open) => return Err(format!("</{name}> closes <{open}>")),
                None => return Err(format!("</{name}> closes nothing")),
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().ok_or("empty tag")?;
        check_attributes(&tag[name.len()..])?;
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name);
        }
    }
    check_text(rest)?;
    if !rest.trim().is_empty() {
        return Err("text after the root element".into());
    }
    match (stack.last(), roots) {
        (Some(open), _) => Err(format!("<{open}> is never closed")),
        (None, 1) => Ok(()),
        (None, n) => Err(format!("{n} root elements")),
    }
}

/// Index of the `>` that ends the tag at the start of `s`, skipping quotes.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

fn check_attributes(mut attrs: &str) -> Result<(), String> {
    loop {
        attrs = attrs.trim_start();
        if attrs.is_empty() {
            return Ok(());
        }
        let eq = attrs
            .find('=')
            .ok_or(format!("attribute without value: {attrs}"))?;
        let name = attrs[..eq].trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("bad attribute name {name:?}"));
        }
        let value = attrs[eq + 1..].trim_start();
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'');
        let quote = quote.ok_or(format!("attribute {name} is not quoted"))?;
        let close = value[1..]
            .find(quote)
            .ok_or(format!("attribute {name} is not closed"))?;
        let inner = &value[1..1 + close];
        if inner.contains('<') {
            return Err(format!("'<' in attribute {name}"));
        }
        check_text(inner)?;
        attrs = &value[close + 2..];
    }
}

fn check_text(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        let after = &rest[amp + 1..];
        let end = after.find(';').ok_or("'&' without ';'")?;
        let entity = &after[..end];
        let ok = matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos")
            || entity
                .strip_prefix('#')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()));
        if !ok {
            return Err(format!("unknown entity &{entity};"));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Sample;

    fn line(row: Row, server: Server, load: Load, rate: Option<f64>) -> Line {
        Line {
            row,
            row_title: row.title().to_string(),
            server,
            server_name: server.name().to_string(),
            load,
            replies_per_s: rate,
            ratio: rate.map(|r| r / 100_000.0),
            p50_us: rate.map(|_| 55.0),
            p99_us: rate.map(|_| 99.0),
            lost: Some(0),
            server_cpu_us_per_reply: None,
            mismatches: 0,
            samples: Vec::<Sample>::new(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn picture_is_well_formed_and_names_every_server() {
        let mut lines = Vec::new();
        for server in Server::ALL {
            lines.push(line(Row::Ping, server, Load::Loadgen, Some(20_000.0)));
            lines.push(line(Row::Flood64, server, Load::Loadgen, Some(300_000.0)));
        }
        lines.push(line(Row::Flood256, Server::Python, Load::Loadgen, None));
        lines.push(line(
            Row::ClientVsLoadgen,
            Server::CRecvmmsg,
            Load::Client,
            Some(1.0),
        ));
        let svg = render(&lines, "2 cores <test> & \"quotes\"");
        check_well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        for server in Server::ALL {
            assert!(
                svg.contains(&escape(server.name())),
                "{} missing",
                server.name()
            );
        }
        assert!(svg.contains("2 cores &lt;test&gt; &amp; &quot;quotes&quot;"));
        assert!(svg.contains("C recvmmsg ← upcase-client"));
        assert!(svg.contains(">failed<"));
        assert!(svg.contains("20,000"));
    }

    #[test]
    fn the_find_rate_curve_has_a_line_per_search_and_rings_for_failures() {
        let step = |offered_per_s, p99, passed| CurvePoint {
            offered_per_s,
            replies_per_s: offered_per_s as f64,
            loss: 0.0,
            p50_us: Some(40.0),
            p99_us: Some(p99),
            passed,
            failed_on: (!passed).then(|| "loss".to_string()),
        };
        let mut ours = line(Row::FindRate, Server::Upcase, Load::Client, Some(40_000.0));
        ours.samples.push(Sample {
            replies_per_s: 40_000.0,
            lost: 0,
            p50_us: Some(40.0),
            p99_us: Some(90.0),
            mismatches: 0,
            replies: 0,
            server_cpu_s: None,
            run: 1,
            curve: vec![
                step(10_000, 80.0, true),
                step(80_000, 40_000.0, false),
                step(40_000, 90.0, true),
            ],
        });
        let mut theirs = line(Row::FindRate, Server::CRecvmmsg, Load::Client, None);
        theirs.samples.push(Sample {
            curve: vec![step(10_000, 95.0, false)],
            ..ours.samples[0].clone()
        });
        let svg = render(&[ours, theirs], "test");
        check_well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 4, "{svg}");
        assert_eq!(svg.matches(r#"fill="white" stroke"#).count(), 2, "{svg}");
        assert!(
            svg.contains("upcase-server: 40,000 requests/s passed"),
            "{svg}"
        );
        assert!(svg.contains("C recvmmsg: – requests/s passed"), "{svg}");
        // Both scales in decades: 10,000 to 100,000 requests/s.
        assert!(
            svg.contains(">10,000<") && svg.contains(">100,000<"),
            "{svg}"
        );
    }

    #[test]
    fn empty_report_still_renders() {
        check_well_formed(&render(&[], "nothing")).unwrap();
    }

    #[test]
    fn checker_rejects_broken_xml() {
        assert!(check_well_formed("<svg><g></svg>").is_err());
        assert!(check_well_formed("<svg><g/></svg><svg/>").is_err());
        assert!(check_well_formed("<svg a=b/>").is_err());
        assert!(check_well_formed("<svg>a & b</svg>").is_err());
        assert!(check_well_formed("<svg><text>x</text>").is_err());
        assert!(check_well_formed("<?xml version=\"1.0\"?><svg a=\"1\"><g/>&amp;</svg>").is_ok());
    }
}
