//! Managing who can read a store: adding a recipient wraps every epoch's keys for it;
//! removing one starts a new key epoch for data written from then on.

use crate::cas::Cas;
use crate::crypto::{Recipient, StoreKeys};
use crate::error::{Error, Result};
use crate::store::key_index::WrappedKey;

impl Cas {
    /// The recipients that can read data written now.
    pub fn recipients(&self) -> Result<Vec<String>> {
        // A
        let txn = self.lmdb.read()?;
        Ok(self
            .lmdb
            .key_index
            .recipients(&txn, self.config.current_epoch)?
            .into_iter()
            .map(|w| w.recipient)
            .collect())
    }

    /// Lets `r` read the whole store: wraps every epoch's keys for it. No data is
    /// re-encrypted.
    pub fn add_recipient(&self, r: &Recipient) -> Result<()> {
        // PA
        self.current_keys()?;
        let mut txn = self.lmdb.write()?;
        for (epoch, keys) in &self.keys {
            let w = WrappedKey {
                recipient: r.to_string(),
                wrapped: r.wrap(&keys.encode()?)?,
            };
            self.lmdb
                .key_index
                .put(&mut txn, *epoch, &r.fingerprint(), &w)?;
        }
        self.lmdb.commit(txn)?;
        Ok(())
    }

    /// Removes `r` from every epoch and rotates to a new data key wrapped only for the
    /// remaining recipients, so `r` cannot read data written from now on. Data written
    /// before stays readable to whoever kept a copy of the old keys: re-encrypting it would
    /// mean rewriting every slice.
    pub fn remove_recipient(&mut self, r: &Recipient) -> Result<()> {
        // PA
        let current = self.current_keys()?.clone();
        let fp = r.fingerprint();
        let mut txn = self.lmdb.write()?;
        self.check_epoch(&txn)?;
        // Read inside the transaction: a recipient added meanwhile must join the new epoch.
        let remaining: Vec<String> = self
            .lmdb
            .key_index
            .recipients(&txn, self.config.current_epoch)?
            .into_iter()
            .map(|w| w.recipient)
            .filter(|s| *s != r.to_string())
            .collect();
        if remaining.is_empty() {
            return Err(Error::InvalidArgument(
                "cannot remove the last recipient: nobody could read the store".into(),
            ));
        }
        let mut found = false;
        for epoch in 0..=self.config.current_epoch {
            found |= self.lmdb.key_index.delete(&mut txn, epoch, &fp)?;
        }
        if !found {
            return Err(Error::NotFound(format!(
                "recipient {r} is not a recipient of this store"
            )));
        }
        let mut next = StoreKeys::generate();
        next.epoch = current.epoch + 1;
        next.chunk_id_key = current.chunk_id_key;
        next.cdc_seed = current.cdc_seed;
        for text in &remaining {
            let rr = Recipient::parse(text)?;
            let w = WrappedKey {
                recipient: text.clone(),
                wrapped: rr.wrap(&next.encode()?)?,
            };
            self.lmdb
                .key_index
                .put(&mut txn, next.epoch, &rr.fingerprint(), &w)?;
        }
        let mut config = self.config.clone();
        config.current_epoch = next.epoch;
        self.lmdb.meta.put_config(&mut txn, &config)?;
        self.lmdb.commit(txn)?;
        self.config = config;
        self.keys.insert(next.epoch, next);
        Ok(())
    }
}
