//! `submitblock` (BIP 22), retried while the node cannot answer and there is
//! time: shared by the solo source and `hashrig found-blocks submit`.

use std::time::{Duration, Instant};

use super::answer::SubmitAnswer;
use super::rpc::{NodeError, NodeRpc};
use crate::error_chain::Chain;
use crate::found::journal::BlockOutcome;

/// Longest pause between attempts.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Reads a node's answer to `submitblock`: `null` is accepted; a string is
/// why not (BIP 22). "duplicate" means the node already has this very block,
/// which can only be ours (the hash covers our coinbase): an earlier attempt
/// got through before its answer was lost, or an earlier run sent it.
pub fn read_answer(answer: Option<SubmitAnswer>) -> (BlockOutcome, Option<String>) {
    match answer {
        None | Some(SubmitAnswer::Accepted) => (BlockOutcome::Accepted, None),
        Some(SubmitAnswer::Reason(reason)) => match reason.as_str() {
            "duplicate" => (BlockOutcome::Accepted, Some(reason)),
            "inconclusive" | "duplicate-inconclusive" => (BlockOutcome::Stale, Some(reason)),
            _ => (BlockOutcome::Rejected, Some(reason)),
        },
        Some(SubmitAnswer::Unexpected(what)) => (
            BlockOutcome::Rejected,
            Some(format!("unexpected answer {what}")),
        ),
    }
}

/// Submits `block` (hex) until the node answers, or until `deadline()`
/// (asked before every attempt: a miner that starts stopping sets one)
/// has passed: then the block is [`BlockOutcome::Unsubmitted`]. No call
/// outlives the deadline.
pub fn submit_block(
    rpc: &NodeRpc,
    block: &str,
    deadline: &dyn Fn() -> Option<Instant>,
) -> (BlockOutcome, Option<String>) {
    let mut delay = Duration::from_millis(250);
    loop {
        let result = match deadline() {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (BlockOutcome::Unsubmitted, Some("no time left".into()));
                }
                rpc.with_timeout(left)
                    .call_nullable::<SubmitAnswer>("submitblock", [block])
            }
            None => rpc.call_nullable::<SubmitAnswer>("submitblock", [block]),
        };
        match result {
            Ok(answer) => return read_answer(answer),
            Err(NodeError::Rpc { message, code, .. }) => {
                return (
                    BlockOutcome::Rejected,
                    Some(format!("{message} (code {code})")),
                );
            }
            Err(e) => {
                let pause = match deadline() {
                    Some(d) if Instant::now() + delay >= d => {
                        let error = Chain(&e).to_string();
                        tracing::error!("giving up submitting the block: {error}");
                        return (BlockOutcome::Unsubmitted, Some(error));
                    }
                    _ => delay,
                };
                tracing::warn!("submitting the block: {}; retrying in {pause:?}", Chain(&e));
                std::thread::sleep(pause);
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_bip22_gives_them() {
        let reason = |text: &str| Some(SubmitAnswer::Reason(text.into()));
        assert_eq!(read_answer(None), (BlockOutcome::Accepted, None));
        assert_eq!(read_answer(reason("duplicate")).0, BlockOutcome::Accepted);
        assert_eq!(
            read_answer(reason("duplicate-invalid")),
            (BlockOutcome::Rejected, Some("duplicate-invalid".into()))
        );
        assert_eq!(read_answer(reason("inconclusive")).0, BlockOutcome::Stale);
        assert_eq!(read_answer(reason("high-hash")).0, BlockOutcome::Rejected);
        assert_eq!(
            read_answer(Some(SubmitAnswer::Unexpected("42".into()))).0,
            BlockOutcome::Rejected
        );
    }

    #[test]
    fn an_unreachable_node_is_given_up_on_at_the_deadline() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let rpc = NodeRpc::new(
            &url,
            super::super::rpc::RpcAuth::None,
            Duration::from_secs(5),
        );
        let started = Instant::now();
        let deadline = started + Duration::from_millis(900);
        let (outcome, reason) = submit_block(&rpc, "00", &|| Some(deadline));
        assert_eq!(outcome, BlockOutcome::Unsubmitted);
        assert!(reason.is_some_and(|r| r.contains("cannot connect")));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
