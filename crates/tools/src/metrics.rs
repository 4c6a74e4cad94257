//! lastack's metrics as data: the model both views of the admin endpoint
//! are rendered from (`GET /metrics`, Prometheus text format 0.0.4, and
//! `GET /metrics.json`), and the client that reads the JSON back (`lastack
//! stats`, the demo, the tests, the benchmark). Nothing reads the text
//! format back: it is for Prometheus.
//!
//! JSON shape: `{"families": [{"name", "kind": "counter"|"gauge", "help",
//! "samples": [{"labels": {"shard": "0", ...}, "value": 1.0}]}]}`.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A metric's kind (Prometheus: `counter` only goes up, `gauge` is a level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One labelled value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Label names and values, in the order the metric declares them.
    #[serde(with = "ordered_labels")]
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A metric family: its declaration and its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// Every family, in declaration order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exposition {
    pub families: Vec<Family>,
}

impl Exposition {
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The sum of `name` over all its label sets (0 if absent).
    pub fn sum(&self, name: &str) -> f64 {
        self.family(name)
            .map_or(0.0, |f| f.samples.iter().map(|s| s.value).sum())
    }

    /// The sum of `name` over the samples whose label `label` is `value`.
    pub fn sum_where(&self, name: &str, label: &str, value: &str) -> f64 {
        self.family(name).map_or(0.0, |f| {
            f.samples
                .iter()
                .filter(|s| s.label(label) == Some(value))
                .map(|s| s.value)
                .sum()
        })
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn to_prometheus_text(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        for family in &self.families {
            let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.name());
            for sample in &family.samples {
                out.push_str(&family.name);
                if !sample.labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in sample.labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", number(sample.value));
            }
        }
        out
    }

    /// A readable table: one line per family with its total over all label
    /// sets, then each nonzero labelled sample indented.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for family in &self.families {
            let total: f64 = family.samples.iter().map(|s| s.value).sum();
            let short = family.name.trim_start_matches("lastack_");
            let _ = writeln!(out, "{short:<48} {:>14}", number(total));
            let labelled = family.samples.len() > 1
                || family.samples.first().is_some_and(|s| !s.labels.is_empty());
            if labelled {
                for s in family.samples.iter().filter(|s| s.value != 0.0) {
                    let labels: Vec<String> =
                        s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let _ = writeln!(out, "    {:<44} {:>14}", labels.join(","), number(s.value));
                }
            }
        }
        out
    }
}

/// A value as Prometheus writes it: integers without a fraction.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Labels as a JSON object whose keys keep the declared order.
mod ordered_labels {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(labels: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(labels.len()))?;
        for (k, v) in labels {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        struct Labels;
        impl<'de> Visitor<'de> for Labels {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of label names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut labels = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    labels.push(entry);
                }
                Ok(labels)
            }
        }
        d.deserialize_map(Labels)
    }
}

/// `GET path` from an admin endpoint; the body of a 200 answer (an error
/// carries the status line and the body of any other).
pub fn get(admin: SocketAddr, path: &str) -> io::Result<String> {
    request(admin, "GET", path)
}

/// `POST path` (no body) to an admin endpoint, as [`get`].
pub fn post(admin: SocketAddr, path: &str) -> io::Result<String> {
    request(admin, "POST", path)
}

fn request(admin: SocketAddr, method: &str, path: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(35)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: lastack\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or("");
        return Err(io::Error::other(format!("{status}: {}", body.trim_end())));
    }
    Ok(body.to_string())
}

/// The metrics of a running instance (`GET /metrics.json`).
pub fn fetch(admin: SocketAddr) -> io::Result<Exposition> {
    let body = get(admin, "/metrics.json")?;
    serde_json::from_str(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    fn exposition() -> Exposition {
        Exposition {
            families: vec![
                Family {
                    name: "lastack_rx_frames_total".into(),
                    kind: Kind::Counter,
                    help: "Frames.".into(),
                    samples: vec![
                        sample(&[("shard", "0")], 10.0),
                        sample(&[("shard", "1")], 11.0),
                    ],
                },
                Family {
                    name: "lastack_uptime_seconds".into(),
                    kind: Kind::Gauge,
                    help: "Seconds \\ since\nstart.".into(),
                    samples: vec![sample(&[], 1.5)],
                },
                Family {
                    name: "lastack_backend_up".into(),
                    kind: Kind::Gauge,
                    help: "Up.".into(),
                    samples: vec![sample(&[("pool", "a\"b"), ("backend", "10.0.0.1:80")], 1.0)],
                },
            ],
        }
    }

    #[test]
    fn json_round_trips_and_keeps_the_label_order() {
        let e = exposition();
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains(r#""labels":{"pool":"a\"b","backend":"10.0.0.1:80"}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Exposition>(&json).unwrap(), e);
        assert_eq!(e.sum("lastack_rx_frames_total"), 21.0);
        assert_eq!(e.sum_where("lastack_rx_frames_total", "shard", "1"), 11.0);
        assert_eq!(e.sum("absent"), 0.0);
    }

    #[test]
    fn text_escapes_help_and_label_values() {
        let text = exposition().to_prometheus_text();
        assert!(text.contains("# HELP lastack_uptime_seconds Seconds \\\\ since\\nstart.\n"));
        assert!(text.contains("# TYPE lastack_rx_frames_total counter\n"));
        assert!(text.contains("lastack_rx_frames_total{shard=\"1\"} 11\n"));
        assert!(text.contains("lastack_uptime_seconds 1.5\n"));
        assert!(text.contains("lastack_backend_up{pool=\"a\\\"b\",backend=\"10.0.0.1:80\"} 1\n"));
    }

    #[test]
    fn the_table_totals_each_family() {
        let table = exposition().table();
        assert!(table.contains("rx_frames_total"), "{table}");
        assert!(table
            .lines()
            .any(|l| l.starts_with("rx_frames_total") && l.ends_with(" 21")));
        assert!(table
            .lines()
            .any(|l| l.trim_start().starts_with("shard=1") && l.ends_with(" 11")));
    }
}
