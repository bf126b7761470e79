//! The gateway's guards against a failing or slow dependency, as one field of `App`, and their
//! lines in `/metrics`.

use std::fmt::Write as _;

use flashgate_config::GatewaySettings;

use crate::breaker::in_flight::InFlight;
use crate::breaker::mysql::MysqlBreaker;

/// The MySQL breaker of the read routes and the bound on Redis calls in flight.
pub struct Guards {
    /// Refuses the routes that read MySQL at once while MySQL does not answer.
    pub mysql: MysqlBreaker,
    /// Sheds purchases and claims past `gateway.redis_max_in_flight` calls waiting on Redis.
    pub redis_in_flight: InFlight,
}

impl Guards {
    /// The guards the settings describe, the breaker closed.
    pub fn new(settings: &GatewaySettings) -> Self {
        Self {
            mysql: MysqlBreaker::new(&settings.breaker),
            redis_in_flight: InFlight::new(
                usize::try_from(settings.redis_max_in_flight).unwrap_or(usize::MAX),
            ),
        }
    }

    /// Appends the guards' metrics in the Prometheus text format: each breaker's state (0
    /// closed, 1 open, 2 half-open), trips and refusals; the calls shed and in flight.
    pub fn render(&self, out: &mut String) {
        let mysql = &self.mysql;
        let _ = writeln!(
            out,
            "# TYPE flashgate_breaker_state gauge\n\
             flashgate_breaker_state{{breaker=\"mysql\"}} {}\n\
             # TYPE flashgate_breaker_trips_total counter\n\
             flashgate_breaker_trips_total{{breaker=\"mysql\"}} {}\n\
             # TYPE flashgate_breaker_rejections_total counter\n\
             flashgate_breaker_rejections_total{{breaker=\"mysql\"}} {}\n\
             # TYPE flashgate_shed_total counter\n\
             flashgate_shed_total{{reason=\"redis_in_flight\"}} {}\n\
             # TYPE flashgate_redis_in_flight gauge\n\
             flashgate_redis_in_flight {}",
            mysql.state() as u8,
            mysql.trips(),
            mysql.refused(),
            self.redis_in_flight.shed(),
            self.redis_in_flight.current(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_show_each_breaker_state_and_the_sheds() {
        let guards = Guards::new(&GatewaySettings {
            redis_max_in_flight: 1,
            ..GatewaySettings::default()
        });
        let _held = guards.redis_in_flight.enter();
        assert!(guards.redis_in_flight.enter().is_none());
        let mut text = String::new();
        guards.render(&mut text);
        for line in [
            r#"flashgate_breaker_state{breaker="mysql"} 0"#,
            r#"flashgate_breaker_trips_total{breaker="mysql"} 0"#,
            r#"flashgate_breaker_rejections_total{breaker="mysql"} 0"#,
            r#"flashgate_shed_total{reason="redis_in_flight"} 1"#,
            "flashgate_redis_in_flight 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from {text}"
            );
        }
    }
}
