//! Thin wrappers that let the fuzz targets in `fuzz/` reach the cluster's record decoders,
//! whose type tags are private. Not part of the API: hidden from the docs.

use ouroboros_db::codec;

use crate::bootstrapper::{TokenBody, TAG_TOKEN};
use crate::error::Result;
use crate::membership::{ClusterInfo, Invite, MemberRecord, TAG_INFO, TAG_INVITE, TAG_MEMBER};

/// Decodes the cluster identity record as the membership database stores it.
pub fn decode_cluster_info(bytes: &[u8]) -> Result<ClusterInfo> {
    // A
    Ok(codec::decode("cluster info", TAG_INFO, bytes)?)
}

/// Encodes the cluster identity record.
pub fn encode_cluster_info(v: &ClusterInfo) -> Result<Vec<u8>> {
    // A
    Ok(codec::encode(TAG_INFO, v)?)
}

/// Decodes a member record as the membership database stores it.
pub fn decode_member(bytes: &[u8]) -> Result<MemberRecord> {
    // A
    Ok(codec::decode("member", TAG_MEMBER, bytes)?)
}

/// Encodes a member record.
pub fn encode_member(v: &MemberRecord) -> Result<Vec<u8>> {
    // A
    Ok(codec::encode(TAG_MEMBER, v)?)
}

/// Decodes an invitation record as the membership database stores it.
pub fn decode_invite(bytes: &[u8]) -> Result<Invite> {
    // A
    Ok(codec::decode("invite", TAG_INVITE, bytes)?)
}

/// Encodes an invitation record.
pub fn encode_invite(v: &Invite) -> Result<Vec<u8>> {
    // A
    Ok(codec::encode(TAG_INVITE, v)?)
}

/// Decodes the signed part of a join token (without checking the signature).
pub fn decode_token_body(bytes: &[u8]) -> Result<TokenBody> {
    // A
    Ok(codec::decode("join token", TAG_TOKEN, bytes)?)
}

/// Encodes the signed part of a join token.
pub fn encode_token_body(v: &TokenBody) -> Result<Vec<u8>> {
    // A
    Ok(codec::encode(TAG_TOKEN, v)?)
}
