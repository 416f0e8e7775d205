//! The FUSE view of an ouro store (`ouro mount`): keys as files, versions as directories.
//! Reserved for the mount issue; nothing is implemented here yet.
