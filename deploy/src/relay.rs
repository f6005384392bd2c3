//! The delay relay: a user-space stand-in for `netem delay` on kernels
//! without netem.
//!
//! It runs in the testbed's links namespace, on one member's port of a data
//! network (see [`crate::testbed`]): it reads the Ethernet frames the member
//! sends from the port's interface (an AF_PACKET socket), keeps those whose
//! source MAC is the member's (the same socket also sees frames going the
//! other way), holds each until its due time (arrival plus the delay) and
//! writes it to the interface whose peer is on the network's bridge. The
//! delay is the same for every frame, so due times come in arrival order
//! and a FIFO queue is the timer: one thread reads and stamps, one sleeps
//! until the head is due and sends. The queue is bounded
//! ([`QUEUE_FRAMES`]); a frame that finds it full is dropped, like a full
//! qdisc would.
//!
//! Frames towards the member do not pass here: a `tc` mirred redirect
//! takes them straight from the bridge side to the member's port.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use pnet_datalink::{Channel, Config, DataLinkSender, MacAddr, NetworkInterface};

/// The most frames held at once.
pub const QUEUE_FRAMES: usize = 65_536;
/// The largest frame read.
const MAX_FRAME: usize = 65_536;

fn interface(name: &str) -> anyhow::Result<NetworkInterface> {
    pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .with_context(|| format!("no interface {name} here"))
}

fn open(
    name: &str,
) -> anyhow::Result<(
    Box<dyn DataLinkSender>,
    Box<dyn pnet_datalink::DataLinkReceiver>,
)> {
    let config = Config {
        read_buffer_size: MAX_FRAME,
        write_buffer_size: MAX_FRAME,
        ..Config::default()
    };
    match pnet_datalink::channel(&interface(name)?, config)
        .with_context(|| format!("opening a packet socket on {name}"))?
    {
        Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => bail!("{name} is not an Ethernet interface"),
    }
}

/// Relays the frames from `source` read on `input` to `output`, each
/// `delay` after it arrived, until the process is killed. Prints
/// `delay-relay ready` once both sockets are open.
pub fn run(input: &str, output: &str, source: MacAddr, delay: Duration) -> anyhow::Result<()> {
    let (_, mut rx) = open(input)?;
    let (mut tx, _) = open(output)?;
    let (queue, due) = mpsc::sync_channel::<(Instant, Vec<u8>)>(QUEUE_FRAMES);
    let source = source.octets();
    std::thread::Builder::new()
        .name("relay-read".into())
        .spawn(move || {
            loop {
                match rx.next() {
                    Ok(frame) if frame.len() >= 14 && frame[6..12] == source => {
                        let at = Instant::now() + delay;
                        match queue.try_send((at, frame.to_vec())) {
                            Ok(()) | Err(mpsc::TrySendError::Full(_)) => {}
                            Err(mpsc::TrySendError::Disconnected(_)) => return,
                        }
                    }
                    Ok(_) => {}
                    // The port is down (a cut): wait for it to come back.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
        .context("starting the reader")?;
    println!("delay-relay ready: {input} -> {output}, delay {delay:?}");
    while let Ok((at, frame)) = due.recv() {
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        // A frame that cannot be sent (the output is down) is lost, as on
        // a wire.
        let _ = tx.send_to(&frame, None);
    }
    bail!("the reader stopped")
}
