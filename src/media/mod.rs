//! Media: RTP, G.711, RFC 4733 events, the prompt library and player, and the per-call media
//! session core. Nothing here allocates or locks per packet.

pub mod amd;
pub mod bridge;
pub mod codec;
pub mod dtmf_inband;
pub mod jitter;
pub mod player;
pub mod prompts;
pub mod recorder;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod socket;
pub mod speech;
pub mod telephone_event;
pub mod voicemail_cue;
pub mod voicing;
