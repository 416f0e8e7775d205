//! Group commit: store writes that arrive while another is being committed wait, and go
//! together into the next transaction. A node that receives (or hands over) many chunks at
//! once then syncs its disk once per batch rather than once per chunk: each LMDB commit
//! costs a sync and a wake-up of a blocking thread, which dominated a node's CPU time while
//! it took a put's slices.

use std::sync::Arc;

use ouroboros_db::Cas;
use tokio::sync::{mpsc, oneshot};

use crate::error::{ClusterError, Result};

/// Most items committed in one transaction: bounds how long the first waits for the last.
const MAX_BATCH: usize = 64;

/// What a batch does in one transaction: an answer per item, in order, or an error of the
/// whole batch (then nothing was stored).
type ApplyFn<I, O> =
    dyn Fn(&Cas, &[I]) -> ouroboros_db::Result<Vec<ouroboros_db::Result<O>>> + Send + Sync;

/// A queue of store writes of one kind, committed in batches by one task.
pub struct GroupCommit<I, O> {
    tx: mpsc::UnboundedSender<(I, oneshot::Sender<Result<O>>)>,
}

impl<I: Send + 'static, O: Send + 'static> GroupCommit<I, O> {
    /// Starts the task that commits what is submitted, with `apply`; it ends when the
    /// queue is dropped. Must be called inside a tokio runtime.
    pub fn start(
        cas: Arc<Cas>,
        apply: impl Fn(&Cas, &[I]) -> ouroboros_db::Result<Vec<ouroboros_db::Result<O>>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        // PA
        let (tx, mut rx) = mpsc::unbounded_channel::<(I, oneshot::Sender<Result<O>>)>();
        let apply: Arc<ApplyFn<I, O>> = Arc::new(apply);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut items = vec![first];
                while items.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(item) => items.push(item),
                        Err(_) => break,
                    }
                }
                let (batch, replies): (Vec<I>, Vec<_>) = items.into_iter().unzip();
                let cas = Arc::clone(&cas);
                let apply = Arc::clone(&apply);
                match tokio::task::spawn_blocking(move || apply(&cas, &batch)).await {
                    Ok(Ok(answers)) => {
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(answer.map_err(ClusterError::from));
                        }
                    }
                    // Every waiter learns why; the store error itself goes to the first.
                    Ok(Err(e)) => {
                        let why = e.to_string();
                        let mut first = Some(e);
                        for reply in replies {
                            let e = match first.take() {
                                Some(e) => ClusterError::from(e),
                                None => ClusterError::Protocol(why.clone()),
                            };
                            let _ = reply.send(Err(e));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(ClusterError::Protocol(format!(
                                "storing a batch failed: {e}"
                            ))));
                        }
                    }
                }
            }
        });
        GroupCommit { tx }
    }

    /// Queues `item` and waits for its answer, once the batch it joined is committed.
    pub async fn submit(&self, item: I) -> Result<O> {
        // PA
        let (tx, rx) = oneshot::channel();
        let stopped = || ClusterError::Protocol("the node is stopping".into());
        self.tx.send((item, tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn store() -> (tempfile::TempDir, Arc<Cas>) {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::create(
            dir.path(),
            &ouroboros_db::CreateOptions::default(),
            &ouroboros_db::Identity::generate(),
        )
        .unwrap();
        (dir, Arc::new(cas))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_submitted_together_share_batches_and_get_their_own_answers() {
        let (_dir, cas) = store();
        let batches = Arc::new(AtomicUsize::new(0));
        let b = Arc::clone(&batches);
        let gc = Arc::new(GroupCommit::start(cas, move |_cas, items: &[u32]| {
            b.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(items
                .iter()
                .map(|i| {
                    if *i == 7 {
                        Err(ouroboros_db::Error::Corrupt("seven".into()))
                    } else {
                        Ok(i * 2)
                    }
                })
                .collect())
        }));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..40u32 {
            let gc = Arc::clone(&gc);
            set.spawn(async move { (i, gc.submit(i).await) });
        }
        while let Some(r) = set.join_next().await {
            let (i, answer) = r.unwrap();
            match answer {
                Ok(v) => assert_eq!(v, i * 2),
                Err(e) => {
                    assert_eq!(i, 7);
                    assert!(e.to_string().contains("seven"), "{e}");
                }
            }
        }
        let n = batches.load(Ordering::SeqCst);
        assert!(n < 40, "40 items in {n} transactions: none were grouped");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_item_in_it() {
        let (_dir, cas) = store();
        let gc = GroupCommit::start(cas, |_cas, _items: &[u8]| {
            Err::<Vec<ouroboros_db::Result<()>>, _>(ouroboros_db::Error::NoSpace("full".into()))
        });
        let (a, b) = tokio::join!(gc.submit(1), gc.submit(2));
        for r in [a, b] {
            assert!(r.unwrap_err().to_string().contains("full"));
        }
    }
}
