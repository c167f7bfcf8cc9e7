//! 4/42 Key Alert: fetch each part of a key with Get Key from the configured key
//! servers only (never anywhere else), all in parallel within one timeout, assemble
//! in entry order, require the final 0xFF, store in the inbox.

use std::sync::Arc;

use raida_client::{Client, Server, Transport};
use raida_proto::client::ClientKey;
use raida_proto::commands::ids::{GET_KEY, GROUP_KEY_EXCHANGE};
use raida_proto::commands::key_alert::{self, AlertEntry};
use raida_proto::commands::post_key;
use raida_proto::{Key16, Status};

use crate::dispatch::AnswerFuture;
use crate::inbox::InboxKey;
use crate::state::{Answer, Call, KeyServer, ServerState};

/// Whether an entry names a configured key server (same IP version, address, port, RAIDA id).
pub fn may_contact(servers: &[KeyServer], e: &AlertEntry) -> Option<KeyServer> {
    let ip = e.ip()?;
    servers.iter().copied().find(|s| s.ip == ip && s.port == e.port && s.raida_id == e.raida_id)
}

pub fn run(state: Arc<ServerState>, call: Call) -> AnswerFuture {
    Box::pin(async move { alert(&state, &call).await })
}

async fn alert(state: &ServerState, call: &Call) -> Answer {
    let entries = match key_alert::parse(&call.payload) {
        Ok(e) => e,
        Err(s) => return s.into(),
    };
    let settings = &state.key_alert;
    let identity =
        settings.identity.map(|(dn, sn)| state.ledger.identity_coin(dn, sn).map(|a| a.map(|ans| (dn, sn, ans))));
    let Ok(identity) = identity.transpose().map(Option::flatten) else { return Status::CoinLoad.into() };
    if settings.identity.is_some() && identity.is_none() {
        tracing::warn!("key alert: the configured identity coin does not load; fetching without it");
    }
    let fetches = entries.iter().map(|e| {
        let target = may_contact(&settings.key_servers, e);
        let key = match (&identity, target) {
            (Some((dn, sn, ans)), Some(t)) => {
                ClientKey::Coin { dn: *dn, sn: *sn, an: Key16::new(ans[t.raida_id as usize]) }
            }
            _ => ClientKey::None,
        };
        let payload = post_key::encode_get(&e.key_id);
        let coin_id = state.identity.coin_id;
        async move {
            let t = target?;
            let server = Server { addr: (t.ip, t.port).into(), raida_id: t.raida_id };
            match Client::new(Transport::Udp, coin_id, settings.timeout)
                .request(server, GROUP_KEY_EXCHANGE, GET_KEY, &key, &payload)
                .await
            {
                Ok(reply) => post_key::decode_get_answer(&reply.payload).map(|(s, k)| ((s.dn, s.sn), k.to_vec())),
                Err(err) => {
                    tracing::info!(server = %server.addr, error = %err, "key alert: part not fetched");
                    None
                }
            }
        }
    });
    let fetched = tokio::time::timeout(settings.timeout, futures_util::future::join_all(fetches))
        .await
        .unwrap_or_else(|_| vec![None; entries.len()]);
    let parts: Vec<Option<Vec<u8>>> = fetched.iter().map(|f| f.as_ref().map(|(_, k)| k.clone())).collect();
    let (status, map, key) = key_alert::assemble(&parts);
    if let Some(key) = key {
        let stored = InboxKey {
            key_id: entries[0].key_id,
            created: call.now,
            senders: fetched.iter().flatten().map(|(s, _)| *s).collect(),
            key,
        };
        if let Err(e) = state.inbox.store(&stored) {
            tracing::error!(error = %e, "key alert: cannot store the assembled key");
            return Status::Filesystem.into();
        }
    }
    Answer { status, payload: map.to_vec() }
}
