//! What a Stratum V2 pool says, parsed once at the edge: SRI's codec
//! decodes the binary frame (`parsers_sv2`), and every field that the rest
//! of the client relies on is validated here and turned into plain Rust
//! types, so the session never touches the wire types.

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Target};
use stratum_core::mining_sv2::{NewExtendedMiningJobOwned, OpenExtendedMiningChannelSuccessOwned};
use stratum_core::parsers_sv2::{CommonMessages, CommonMessagesOwned, Mining, MiningOwned};

use super::transport::{CodecError, Frame, MAX_POOL_PAYLOAD};

/// The longest extranonce (prefix and rolled part together) the spec allows.
pub const MAX_EXTRANONCE: usize = 32;
/// Merkle path levels at most: 2^32 transactions will not fit in a block.
pub const MAX_MERKLE_PATH: usize = 32;
/// Error codes and reasons are kept to this many characters.
const MAX_TEXT: usize = 128;

/// A message from the pool that the client acts on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PoolMessage {
    /// `SetupConnection.Success`.
    SetupConnectionSuccess {
        /// The protocol version the pool chose.
        used_version: u16,
        /// The `SetupConnection` flags the pool answers with.
        flags: u32,
    },
    /// `SetupConnection.Error`: the pool refused the connection.
    SetupConnectionError {
        /// The `SetupConnection` flags the pool answers with.
        flags: u32,
        /// The pool's error code (`invalid-channel-id`, …).
        error_code: String,
    },
    /// `OpenExtendedMiningChannel.Success` or
    /// `OpenStandardMiningChannel.Success` (then `extranonce_size` is 0).
    ChannelOpened(OpenedChannel),
    /// `OpenMiningChannel.Error`: the pool refused the channel.
    OpenChannelError {
        /// The request this answers.
        request_id: u32,
        /// The pool's error code (`invalid-channel-id`, …).
        error_code: String,
    },
    /// `NewExtendedMiningJob`.
    ExtendedJob(ExtendedJob),
    /// `NewMiningJob` (standard channels).
    StandardJob(StandardJob),
    /// `SetNewPrevHash`.
    SetNewPrevHash(NewPrevHash),
    /// `SetTarget`: the share target from now on.
    SetTarget {
        /// The channel the message is for.
        channel_id: u32,
        /// The new share target.
        target: Target,
    },
    /// `SetExtranoncePrefix`.
    SetExtranoncePrefix {
        /// The channel the message is for.
        channel_id: u32,
        /// The pool's new part of the extranonce.
        prefix: Vec<u8>,
    },
    /// Shares up to `last_sequence_number` not answered otherwise were
    /// accepted.
    SubmitSharesSuccess {
        /// The channel the message is for.
        channel_id: u32,
        /// The highest sequence number the acknowledgement covers.
        last_sequence_number: u32,
        /// How many shares it accepts.
        accepted: u32,
    },
    /// `SubmitShares.Error`: one share refused.
    SubmitSharesError {
        /// The channel the message is for.
        channel_id: u32,
        /// The sequence number of the refused share.
        sequence_number: u32,
        /// The pool's error code (`invalid-channel-id`, …).
        error_code: String,
    },
    /// `UpdateChannel.Error`.
    UpdateChannelError {
        /// The channel the message is for.
        channel_id: u32,
        /// The pool's error code (`invalid-channel-id`, …).
        error_code: String,
    },
    /// `CloseChannel`: the pool ends the channel.
    CloseChannel {
        /// The channel the message is for.
        channel_id: u32,
        /// The pool's reason.
        reason: String,
    },
    /// `Reconnect`: an empty host means the same host.
    Reconnect {
        /// The host to connect to instead.
        host: String,
        /// Its port.
        port: u16,
    },
    /// Valid, and nothing for a miner to do (`SetGroupChannel`,
    /// `ChannelEndpointChanged`, an extension's message).
    Ignored(&'static str),
}

/// A channel the pool opened.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedChannel {
    pub(crate) request_id: u32,
    pub(crate) channel_id: u32,
    pub(crate) target: Target,
    pub(crate) extranonce_prefix: Vec<u8>,
    /// Bytes of extranonce the miner rolls (extended channels).
    pub extranonce_size: usize,
    pub(crate) extended: bool,
}

/// `NewExtendedMiningJob`: the coinbase around the extranonce, and the
/// merkle path from it to the root.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtendedJob {
    pub(crate) channel_id: u32,
    pub(crate) job_id: u32,
    /// `None`: a future job, mined once a `SetNewPrevHash` names it.
    pub min_ntime: Option<u32>,
    /// The block version (the base that version rolling changes).
    pub version: u32,
    pub(crate) version_rolling_allowed: bool,
    /// The merkle path from the coinbase to the root.
    pub merkle_path: Vec<[u8; 32]>,
    /// The coinbase transaction before the extranonce.
    pub coinbase_prefix: Vec<u8>,
    /// The coinbase transaction after the extranonce.
    pub coinbase_suffix: Vec<u8>,
}

/// `NewMiningJob` (standard channels): the merkle root is fixed.
#[derive(Debug, Clone, PartialEq)]
pub struct StandardJob {
    pub(crate) channel_id: u32,
    pub(crate) job_id: u32,
    pub(crate) min_ntime: Option<u32>,
    /// The block version.
    pub version: u32,
    pub(crate) merkle_root: [u8; 32],
}

/// `SetNewPrevHash` (mining protocol): the job to mine on a new block.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPrevHash {
    pub(crate) channel_id: u32,
    pub(crate) job_id: u32,
    /// The previous block.
    pub prev_hash: BlockHash,
    pub(crate) min_ntime: u32,
    /// The network target's compact form.
    pub bits: CompactTarget,
}

/// A frame that is no valid message for a miner, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// SRI's decoder refused the payload.
    #[error("undecodable message type {message_type:#04x}")]
    Decode {
        /// The frame's message type byte.
        message_type: u8,
        /// The decoder's complaint.
        #[source]
        source: CodecError,
    },
    /// A payload longer than any pool message (see `MAX_POOL_PAYLOAD`).
    #[error("message type {message_type:#04x} of {len} bytes, longer than any a pool sends ({MAX_POOL_PAYLOAD}); dropped")]
    TooLong {
        /// The frame's message type byte.
        message_type: u8,
        /// The payload length the pool sent.
        len: usize,
    },
    /// A message that decodes but says something impossible.
    #[error("{message}: {detail}")]
    Invalid {
        /// The message whose field is wrong.
        message: &'static str,
        /// What is impossible about it.
        detail: String,
    },
    /// A message a pool never sends a miner.
    #[error("message type {message_type:#04x} ({name}) is not one a pool sends to a miner")]
    Unexpected {
        /// The frame's message type byte.
        message_type: u8,
        /// The message's name in the specification.
        name: &'static str,
    },
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(MAX_TEXT)
        .collect()
}

fn hash32(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes[..32]);
    out
}

/// A share target from the wire (little-endian U256); zero accepts
/// nothing, so it is refused.
fn target(message: &'static str, bytes: &[u8]) -> Result<Target, MessageError> {
    let target = Target::from_le_bytes(hash32(bytes));
    if target == Target::ZERO {
        return Err(MessageError::Invalid {
            message,
            detail: "a zero target".into(),
        });
    }
    Ok(target)
}

impl TryFrom<Frame> for PoolMessage {
    type Error = MessageError;

    fn try_from(mut frame: Frame) -> Result<Self, MessageError> {
        if frame.payload_len > MAX_POOL_PAYLOAD {
            return Err(MessageError::TooLong {
                message_type: frame.message_type,
                len: frame.payload_len,
            });
        }
        if frame.extension_type != 0 {
            return Ok(PoolMessage::Ignored("an extension's message"));
        }
        let message_type = frame.message_type;
        let decode = |detail: String| MessageError::Decode {
            message_type,
            source: CodecError(detail),
        };
        // Common messages are 0x00-0x0f; the mining protocol's follow.
        if message_type < 0x10 {
            let common = CommonMessages::try_from((message_type, frame.payload.as_mut_slice()))
                .map_err(|e| decode(format!("{e:?}")))?
                .into_owned();
            return Ok(from_common(common));
        }
        let mining = Mining::try_from((message_type, frame.payload.as_mut_slice()))
            .map_err(|e| decode(format!("{e:?}")))?
            .into_owned();
        from_mining(mining, message_type)
    }
}

fn from_common(message: CommonMessagesOwned) -> PoolMessage {
    match message {
        CommonMessagesOwned::SetupConnectionSuccess(m) => PoolMessage::SetupConnectionSuccess {
            used_version: m.used_version,
            flags: m.flags,
        },
        CommonMessagesOwned::SetupConnectionError(m) => PoolMessage::SetupConnectionError {
            flags: m.flags,
            error_code: text(m.error_code.as_bytes()),
        },
        CommonMessagesOwned::Reconnect(m) => PoolMessage::Reconnect {
            host: text(m.new_host.as_bytes()),
            port: m.new_port,
        },
        CommonMessagesOwned::ChannelEndpointChanged(_) => {
            PoolMessage::Ignored("ChannelEndpointChanged")
        }
        CommonMessagesOwned::SetupConnection(_) => PoolMessage::Ignored("SetupConnection"),
    }
}

impl TryFrom<OpenExtendedMiningChannelSuccessOwned> for OpenedChannel {
    type Error = MessageError;

    fn try_from(m: OpenExtendedMiningChannelSuccessOwned) -> Result<Self, MessageError> {
        let prefix = m.extranonce_prefix.as_bytes().to_vec();
        let size = usize::from(m.extranonce_size);
        if prefix.len() + size > MAX_EXTRANONCE {
            return Err(MessageError::Invalid {
                message: "OpenExtendedMiningChannel.Success",
                detail: format!(
                    "extranonce prefix of {} bytes and {size} to roll: more than {MAX_EXTRANONCE}",
                    prefix.len()
                ),
            });
        }
        Ok(OpenedChannel {
            request_id: m.request_id,
            channel_id: m.channel_id,
            target: target("OpenExtendedMiningChannel.Success", m.target.as_bytes())?,
            extranonce_prefix: prefix,
            extranonce_size: size,
            extended: true,
        })
    }
}

impl TryFrom<NewExtendedMiningJobOwned> for ExtendedJob {
    type Error = MessageError;

    fn try_from(m: NewExtendedMiningJobOwned) -> Result<Self, MessageError> {
        let merkle_path: Vec<[u8; 32]> = m
            .merkle_path
            .into_inner()
            .iter()
            .map(|h| hash32(h.as_bytes()))
            .collect();
        if merkle_path.len() > MAX_MERKLE_PATH {
            return Err(MessageError::Invalid {
                message: "NewExtendedMiningJob",
                detail: format!("a merkle path of {} levels", merkle_path.len()),
            });
        }
        Ok(ExtendedJob {
            channel_id: m.channel_id,
            job_id: m.job_id,
            min_ntime: m.min_ntime.into_inner(),
            version: m.version,
            version_rolling_allowed: m.version_rolling_allowed,
            merkle_path,
            coinbase_prefix: m.coinbase_tx_prefix.as_bytes().to_vec(),
            coinbase_suffix: m.coinbase_tx_suffix.as_bytes().to_vec(),
        })
    }
}

fn from_mining(message: MiningOwned, message_type: u8) -> Result<PoolMessage, MessageError> {
    let unexpected = |name| MessageError::Unexpected { message_type, name };
    Ok(match message {
        MiningOwned::OpenExtendedMiningChannelSuccess(m) => {
            PoolMessage::ChannelOpened(m.try_into()?)
        }
        MiningOwned::OpenStandardMiningChannelSuccess(m) => {
            PoolMessage::ChannelOpened(OpenedChannel {
                request_id: m.request_id,
                channel_id: m.channel_id,
                target: target("OpenStandardMiningChannel.Success", m.target.as_bytes())?,
                extranonce_prefix: m.extranonce_prefix.as_bytes().to_vec(),
                extranonce_size: 0,
                extended: false,
            })
        }
        MiningOwned::OpenMiningChannelError(m) => PoolMessage::OpenChannelError {
            request_id: m.request_id,
            error_code: text(m.error_code.as_bytes()),
        },
        MiningOwned::NewExtendedMiningJob(m) => PoolMessage::ExtendedJob(m.try_into()?),
        MiningOwned::NewMiningJob(m) => PoolMessage::StandardJob(StandardJob {
            channel_id: m.channel_id,
            job_id: m.job_id,
            min_ntime: m.min_ntime.into_inner(),
            version: m.version,
            merkle_root: hash32(m.merkle_root.as_bytes()),
        }),
        MiningOwned::SetNewPrevHash(m) => PoolMessage::SetNewPrevHash(NewPrevHash {
            channel_id: m.channel_id,
            job_id: m.job_id,
            prev_hash: BlockHash::from_byte_array(hash32(m.prev_hash.as_bytes())),
            min_ntime: m.min_ntime,
            bits: CompactTarget::from_consensus(m.nbits),
        }),
        MiningOwned::SetTarget(m) => PoolMessage::SetTarget {
            channel_id: m.channel_id,
            target: target("SetTarget", m.maximum_target.as_bytes())?,
        },
        MiningOwned::SetExtranoncePrefix(m) => PoolMessage::SetExtranoncePrefix {
            channel_id: m.channel_id,
            prefix: m.extranonce_prefix.as_bytes().to_vec(),
        },
        MiningOwned::SubmitSharesSuccess(m) => PoolMessage::SubmitSharesSuccess {
            channel_id: m.channel_id,
            last_sequence_number: m.last_sequence_number,
            accepted: m.new_submits_accepted_count,
        },
        MiningOwned::SubmitSharesError(m) => PoolMessage::SubmitSharesError {
            channel_id: m.channel_id,
            sequence_number: m.sequence_number,
            error_code: text(m.error_code.as_bytes()),
        },
        MiningOwned::UpdateChannelError(m) => PoolMessage::UpdateChannelError {
            channel_id: m.channel_id,
            error_code: text(m.error_code.as_bytes()),
        },
        MiningOwned::CloseChannel(m) => PoolMessage::CloseChannel {
            channel_id: m.channel_id,
            reason: text(m.reason_code.as_bytes()),
        },
        MiningOwned::SetGroupChannel(_) => PoolMessage::Ignored("SetGroupChannel"),
        MiningOwned::SetCustomMiningJobSuccess(_) | MiningOwned::SetCustomMiningJobError(_) => {
            PoolMessage::Ignored("SetCustomMiningJob answer")
        }
        MiningOwned::OpenExtendedMiningChannel(_) => {
            return Err(unexpected("OpenExtendedMiningChannel"))
        }
        MiningOwned::OpenStandardMiningChannel(_) => {
            return Err(unexpected("OpenStandardMiningChannel"))
        }
        MiningOwned::SetCustomMiningJob(_) => return Err(unexpected("SetCustomMiningJob")),
        MiningOwned::SubmitSharesExtended(_) => return Err(unexpected("SubmitSharesExtended")),
        MiningOwned::SubmitSharesStandard(_) => return Err(unexpected("SubmitSharesStandard")),
        MiningOwned::UpdateChannel(_) => return Err(unexpected("UpdateChannel")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratum_core::binary_sv2::{self, Seq0255, Sv2Option, B032, B064K, U256};
    use stratum_core::mining_sv2::{
        NewExtendedMiningJob, OpenExtendedMiningChannelSuccess, SetNewPrevHash, SetTarget,
    };
    use stratum_core::parsers_sv2::IsSv2Message;

    /// The frame SRI's codec makes of `message`.
    fn frame_of(message: Mining<'_>) -> Frame {
        let message_type = message.message_type();
        let channel_msg = message.channel_bit();
        let payload = binary_sv2::to_bytes(message).unwrap();
        Frame {
            message_type,
            extension_type: 0,
            channel_msg,
            payload_len: payload.len(),
            payload,
        }
    }

    #[test]
    fn jobs_and_previous_blocks_keep_their_byte_order() {
        let coinbase_prefix = [1u8, 2, 3];
        let coinbase_suffix = [4u8, 5];
        let branch = [[7u8; 32], [8u8; 32]];
        let job = NewExtendedMiningJob {
            channel_id: 3,
            job_id: 9,
            min_ntime: Sv2Option::new(None),
            version: 0x2000_0000,
            version_rolling_allowed: true,
            merkle_path: Seq0255::new(branch.iter().map(U256::from).collect()).unwrap(),
            coinbase_tx_prefix: B064K::new(&coinbase_prefix).unwrap(),
            coinbase_tx_suffix: B064K::new(&coinbase_suffix).unwrap(),
        };
        let Ok(PoolMessage::ExtendedJob(parsed)) =
            PoolMessage::try_from(frame_of(Mining::NewExtendedMiningJob(job)))
        else {
            panic!("not an extended job");
        };
        assert_eq!(parsed.min_ntime, None);
        assert_eq!(parsed.merkle_path, branch);
        assert_eq!(parsed.coinbase_prefix, coinbase_prefix);
        assert_eq!(parsed.coinbase_suffix, coinbase_suffix);

        // Block 1's parent (the genesis block), as a header holds it.
        let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Bitcoin).block_hash();
        let bytes = genesis.to_byte_array();
        let prev = SetNewPrevHash {
            channel_id: 3,
            job_id: 9,
            prev_hash: U256::from(&bytes),
            min_ntime: 1_231_469_665,
            nbits: 0x1d00_ffff,
        };
        let Ok(PoolMessage::SetNewPrevHash(parsed)) =
            PoolMessage::try_from(frame_of(Mining::SetNewPrevHash(prev)))
        else {
            panic!("not SetNewPrevHash");
        };
        assert_eq!(parsed.prev_hash, genesis);
        assert_eq!(parsed.bits.to_consensus(), 0x1d00_ffff);
    }

    #[test]
    fn targets_are_little_endian_and_never_zero() {
        let mut bytes = [0u8; 32];
        bytes[29] = 0xff; // 0x00000000ff00...: difficulty 1's top bytes
        let set = SetTarget {
            channel_id: 1,
            maximum_target: U256::from(&bytes),
        };
        let Ok(PoolMessage::SetTarget { target, .. }) =
            PoolMessage::try_from(frame_of(Mining::SetTarget(set)))
        else {
            panic!("not SetTarget");
        };
        assert_eq!(target, Target::from_le_bytes(bytes));
        let zero = SetTarget {
            channel_id: 1,
            maximum_target: U256::from(&[0u8; 32]),
        };
        assert!(matches!(
            PoolMessage::try_from(frame_of(Mining::SetTarget(zero))),
            Err(MessageError::Invalid { .. })
        ));
    }

    #[test]
    fn an_extranonce_past_32_bytes_is_refused() {
        let prefix = [0u8; 30];
        let open = OpenExtendedMiningChannelSuccess {
            request_id: 1,
            channel_id: 1,
            target: U256::from(&[0xff; 32]),
            extranonce_size: 4,
            extranonce_prefix: B032::new(&prefix).unwrap(),
            group_channel_id: 0,
        };
        let err = PoolMessage::try_from(frame_of(Mining::OpenExtendedMiningChannelSuccess(open)))
            .unwrap_err();
        assert!(err.to_string().contains("more than 32"), "{err}");
    }

    #[test]
    fn a_payload_past_the_bound_is_a_bad_message_naming_its_length() {
        let frame = Frame {
            message_type: 0x1f,
            extension_type: 0,
            channel_msg: true,
            payload: Vec::new(),
            payload_len: 16 << 20,
        };
        let err = PoolMessage::try_from(frame).unwrap_err();
        assert_eq!(
            err,
            MessageError::TooLong {
                message_type: 0x1f,
                len: 16 << 20
            }
        );
        assert!(err.to_string().contains("16777216 bytes"), "{err}");
    }

    #[test]
    fn truncated_and_unknown_frames_are_errors_not_panics() {
        let frame = |message_type, len| Frame {
            message_type,
            extension_type: 0,
            channel_msg: false,
            payload: vec![0xff; len],
            payload_len: len,
        };
        for message_type in 0..=255u8 {
            // No message is shorter than 2 bytes: every type, known or not,
            // cut to 0 or 1 is undecodable, and says which type it was.
            for len in [0usize, 1] {
                let result = PoolMessage::try_from(frame(message_type, len));
                assert!(
                    matches!(
                        result,
                        Err(MessageError::Decode { message_type: t, .. }) if t == message_type
                    ),
                    "type {message_type:#04x}, {len} bytes: {result:?}"
                );
            }
            // Longer junk never panics; what decodes is one typed message.
            for len in [5usize, 40] {
                let _ = PoolMessage::try_from(frame(message_type, len));
            }
        }
        let valid = SetTarget {
            channel_id: 1,
            maximum_target: U256::from(&[1u8; 32]),
        };
        assert!(PoolMessage::try_from(frame_of(Mining::SetTarget(valid))).is_ok());
    }
}
