//! A `redis-server` of one test alone, for the tests that make Redis hang or go away without
//! touching the shared stack.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `redis-server` of this test alone (on a free port, no persistence), so that it can be
/// made to hang or stop without touching the shared stack. Killed when dropped.
pub struct PrivateRedis {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl PrivateRedis {
    /// Starts one on a free port and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by scripts/stack.sh)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, port }
    }

    /// Makes the server do nothing for `seconds` (`DEBUG SLEEP`, on a connection of its own);
    /// the returned task ends when it is awake again.
    pub async fn hang(&self, seconds: f64) -> tokio::task::JoinHandle<()> {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to the private redis");
        let secs = seconds.to_string();
        let command = format!(
            "*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n${}\r\n{secs}\r\n",
            secs.len()
        );
        conn.write_all(command.as_bytes())
            .await
            .expect("DEBUG SLEEP");
        tokio::spawn(async move {
            let mut reply = [0u8; 5];
            conn.read_exact(&mut reply)
                .await
                .expect("DEBUG SLEEP answer");
            assert_eq!(&reply, b"+OK\r\n");
        })
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
