//! A TCP relay on loopback in front of a real server (MariaDB), which a test can cut and
//! restore: "MySQL stopped" for one gateway without stopping the server every other test uses.
//!
//! Cutting drops every relayed connection at once; new connections are then either held open
//! and never answered ([`Cut::Blackhole`], a dead host: the client waits for its timeout) or
//! closed as soon as they arrive ([`Cut::Refuse`], a stopped server: the client fails at
//! once). Restoring relays new connections again (held ones are dropped, so their clients
//! connect anew).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the relay treats connections while cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Accept and never answer nor forward (a host that vanished).
    Blackhole,
    /// Accept and close at once (a server that is down).
    Refuse,
}

/// The relay's state: open, or cut; `epoch` changes on every switch so that connections of an
/// earlier state end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mode {
    cut: Option<Cut>,
    epoch: u64,
}

/// A relay from a loopback port to `target`; stopped when dropped.
pub struct Relay {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Starts relaying `127.0.0.1:<free port>` to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let (mode, watching) = watch::channel(Mode {
            cut: None,
            epoch: 0,
        });
        let accept = tokio::spawn(accept_loop(listener, target, watching));
        Self { addr, mode, accept }
    }

    /// Starts a relay to the host and port of a `mysql://` URL.
    pub async fn to_url(url: &str) -> Self {
        Self::start(host_port(url)).await
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` (a `mysql://user:pass@host:port/db` URL) with its host and port replaced by the
    /// relay's.
    pub fn rewrite_url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (format!("{credentials}@"), rest),
            None => (String::new(), rest),
        };
        let path = rest.find('/').map_or("", |at| &rest[at..]);
        format!("{scheme}://{credentials}{}{path}", self.addr)
    }

    /// Drops every relayed connection; new ones are treated as `how` says until [`restore`].
    ///
    /// [`restore`]: Relay::restore
    pub fn cut(&self, how: Cut) {
        self.mode.send_modify(|mode| {
            mode.cut = Some(how);
            mode.epoch += 1;
        });
    }

    /// Relays new connections again; connections held while cut are dropped.
    pub fn restore(&self) {
        self.mode.send_modify(|mode| {
            mode.cut = None;
            mode.epoch += 1;
        });
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        // Ends every connection task: their watch sees the sender gone.
        self.mode.send_modify(|mode| mode.epoch += 1);
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<Mode>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let mut mode = mode.clone();
        tokio::spawn(async move {
            let now = *mode.borrow_and_update();
            match now.cut {
                Some(Cut::Refuse) => drop(client),
                // Held (unread, unanswered) until the mode changes.
                Some(Cut::Blackhole) => {
                    let _ = mode.changed().await;
                    drop(client);
                }
                None => {
                    tokio::select! {
                        _ = relay(client, target) => {}
                        _ = mode.changed() => {}
                    }
                }
            }
        });
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// The host and port of a `scheme://user:pass@host:port/db` URL (port 3306 when absent).
fn host_port(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:3306")
    };
    let with_port = with_port.replace("localhost", "127.0.0.1");
    with_port
        .parse()
        .unwrap_or_else(|_| panic!("{authority}: the relay needs an IP address and port"))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn echo(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            stream.read_exact(&mut buf),
        )
        .await
        .map_err(|_| std::io::Error::other("no answer"))?;
        read?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn a_cut_drops_connections_and_a_restore_relays_again() {
        let relay = Relay::start(echo_server().await).await;
        let mut before = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(echo(&mut before).await.unwrap(), b"ping");

        relay.cut(Cut::Blackhole);
        assert!(
            echo(&mut before).await.is_err(),
            "the old connection is gone"
        );
        let mut held = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(
            echo(&mut held).await.unwrap_err().to_string(),
            "no answer",
            "a blackhole answers nothing"
        );
        relay.cut(Cut::Refuse);
        let mut refused = TcpStream::connect(relay.addr()).await.unwrap();
        assert!(echo(&mut refused).await.is_err());

        relay.restore();
        let mut after = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(echo(&mut after).await.unwrap(), b"ping");
        assert_eq!(
            relay.rewrite_url("mysql://u:p@127.0.0.1:3307/db"),
            format!("mysql://u:p@{}/db", relay.addr())
        );
    }

    #[test]
    fn urls_are_pointed_at_the_relay_keeping_credentials_and_database() {
        assert_eq!(
            host_port("mysql://u:p@127.0.0.1:3307/db"),
            "127.0.0.1:3307".parse().unwrap()
        );
        assert_eq!(
            host_port("mysql://localhost/db"),
            "127.0.0.1:3306".parse().unwrap()
        );
    }
}
