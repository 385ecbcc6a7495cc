//! A node's side of its shards: consuming a shard's queue (deliveries
//! handed to [`Lanes`], the shard taken on its first delivery), and letting
//! go of it (hand-over, self-fencing).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{shard_of_key, Inner, ShardTask, Status};
use crate::clock::unix_ms;
use crate::registry::inbox::Lanes;

impl Inner {
    /// Consumes `shard`'s queue (as active consumer or standby: the broker decides).
    pub(super) async fn subscribe(self: &Arc<Self>, shard: u16) -> anyhow::Result<()> {
        let mut sub = tokio::time::timeout(
            Duration::from_secs(10),
            self.bus.consume_shard(shard, self.settings.prefetch),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no consumer within 10 s"))??;
        let (stop, mut stopped) = watch::channel(false);
        let mut losses = sub.losses();
        let me = Arc::clone(self);
        let task = actix_rt::spawn(async move {
            let fence = Arc::clone(&me.fence);
            let mut lanes = Lanes::new(
                me.registry.clone(),
                Arc::clone(&me.bus),
                Arc::new(move || fence.epoch(shard).is_none()),
            );
            // Every way out waits for the deliveries in flight (hand-over,
            // leave and self-fencing rely on it).
            let ended = loop {
                tokio::select! {
                    biased;
                    _ = stopped.changed() => break Some(()),
                    // The broker may deliver to the other consumer from now
                    // on: ask this node's actors through the bus again.
                    () = crate::bus::counted(&mut losses) => me.not_serving(shard),
                    () = lanes.next_done(), if lanes.running() > 0 => {}
                    next = sub.next() => match next {
                        Some(delivery) => {
                            if !delivery.usable() {
                                // Its channel died: the broker has re-queued it
                                // (for a standby, maybe). Do not claim on its word.
                                continue;
                            }
                            // Hold the delivery (not re-queue it: every return
                            // counts against its delivery limit) until the
                            // shard is ours, asking 100 ms doubling to 2 s apart.
                            const CLAIM_RETRY: crate::supervisors::backoff::Backoff =
                                crate::supervisors::backoff::Backoff::doubling(
                                    Duration::from_millis(100),
                                    Duration::from_secs(2),
                                    0.0,
                                );
                            let mut attempt = 0;
                            let mut stop_now = false;
                            while !me.take_on_delivery(shard).await {
                                tokio::select! {
                                    _ = stopped.changed() => { stop_now = true; break; }
                                    _ = tokio::time::sleep(CLAIM_RETRY.delay(attempt, 0.0)) => {}
                                }
                                attempt = attempt.saturating_add(1);
                            }
                            if stop_now {
                                break Some(());
                            }
                            // The broker delivers this queue here: its actors
                            // are asked here directly too.
                            me.set_serving(shard, true);
                            lanes.push(delivery);
                        }
                        None => break None,
                    },
                }
            };
            me.not_serving(shard);
            lanes.finish().await;
            ended.map(|()| sub)
        });
        self.consumers
            .lock()
            .await
            .insert(shard, ShardTask { stop, task });
        // Others hand the shard to this node only once they see it consuming.
        if let Err(e) = self
            .store
            .set_consuming(self.me(), shard, true, unix_ms())
            .await
        {
            tracing::warn!(shard, error = %e, "could not record a shard consumer");
        }
        Ok(())
    }

    /// A delivery arrived, so the broker made this node the shard's active
    /// consumer: make sure the node holds the shard (bumping its epoch fences
    /// off the previous owner). False if the shard could not be taken.
    pub(super) async fn take_on_delivery(&self, shard: u16) -> bool {
        if self.fence.epoch(shard).is_some() {
            return true;
        }
        if !matches!(self.status(), Status::Joining | Status::Up) {
            return false;
        }
        let _claiming = self.claiming[usize::from(shard)].lock().await;
        if self.fence.epoch(shard).is_some() {
            return true; // the heartbeat took it meanwhile
        }
        let before = self
            .view
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .iter()
            .find(|s| s.id == shard)
            .and_then(|s| s.owner.clone());
        match self
            .store
            .claim_shards(self.me(), &[(shard, None)], unix_ms())
            .await
        {
            Ok(claimed) => {
                for (shard, epoch) in claimed {
                    self.fence.hold(shard, epoch);
                    self.taken_at.insert(shard, unix_ms());
                    tracing::info!(shard, epoch, previous = ?before, "shard taken on delivery");
                }
                if before.is_some_and(|b| b != self.settings.node_id) {
                    self.takeovers.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::failover();
                }
                true
            }
            Err(e) => {
                tracing::warn!(shard, error = %e, "could not take the shard; message handed back");
                false
            }
        }
    }

    /// Stops the shard's actors, flushing their state.
    pub(super) async fn passivate_shard(&self, shard: u16) {
        let shards = self.settings.shards;
        let n = self
            .registry
            .passivate_where(
                |key| shard_of_key(key, shards) == shard,
                Duration::from_secs(10),
            )
            .await;
        if n > 0 {
            tracing::debug!(shard, actors = n, "shard's actors passivated");
        }
    }

    /// Hand-off: stop taking the shard's messages (those in flight are
    /// finished), passivate its actors, cancel the consumer and wait until
    /// the broker has it (unacknowledged messages go back, and it activates
    /// the waiting consumer), release the shard; then consume again as
    /// standby if `resubscribe`.
    pub(super) async fn hand_over(self: &Arc<Self>, shard: u16, resubscribe: bool) {
        self.not_serving(shard);
        let task = self.consumers.lock().await.remove(&shard);
        let sub = match task {
            Some(t) => {
                let _ = t.stop.send(true);
                t.task.await.ok().flatten()
            }
            None => None,
        };
        self.passivate_shard(shard).await;
        if let Some(sub) = sub {
            sub.close().await;
        }
        if let Err(e) = self
            .store
            .set_consuming(self.me(), shard, false, unix_ms())
            .await
        {
            tracing::warn!(shard, error = %e, "could not record a shard consumer's end");
        }
        if let Some(epoch) = self.fence.release(shard) {
            match self
                .store
                .release_shard(self.me(), shard, epoch, unix_ms())
                .await
            {
                Ok(_) => tracing::info!(shard, epoch, "shard handed over"),
                Err(e) => tracing::warn!(shard, error = %e, "could not release the shard"),
            }
        }
        if resubscribe {
            if let Err(e) = self.subscribe(shard).await {
                tracing::warn!(shard, error = %e, "could not consume the shard again");
            }
        }
    }

    /// Stops consuming everything and drops every hold (cut off from SQL).
    pub(super) async fn let_go_of_everything(self: &Arc<Self>) {
        let shards: Vec<u16> = self.consumers.lock().await.keys().copied().collect();
        if shards.is_empty() {
            return;
        }
        tracing::warn!(
            shards = shards.len(),
            "lease not renewed: no longer consuming any shard"
        );
        for shard in &shards {
            self.not_serving(*shard);
        }
        for shard in shards {
            let task = self.consumers.lock().await.remove(&shard);
            if let Some(t) = task {
                let _ = t.stop.send(true);
                let _ = t.task.await;
            }
            self.fence.release(shard);
            self.passivate_shard(shard).await;
        }
    }
}
