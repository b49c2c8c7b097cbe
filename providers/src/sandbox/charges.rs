//! Off-session charges, one or many at a time: a batch costs the store a few reads and
//! writes whatever its size (the billing clock charges hundreds at once), and a single
//! charge is a batch of one. Each charge is decided as if alone: its idempotency key is
//! claimed first (the first caller's charge id, whoever asks), then the charge is made
//! once under that id with the customer's saved card deciding the outcome.

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;

use super::{
    ChargeRecord, CustomerRecord, DECLINED, Inner, KeyRecord, NO_PAYMENT_METHOD, RecordKind,
    Status, TestCard, Versioned, encode, new_id, require, store_failed, unknown_payment,
};
use crate::{ChargeRequest, PaymentOutcome, ProviderError};

/// What `charge` refuses before anything is stored.
fn check(r: &ChargeRequest) -> Result<(), ProviderError> {
    require(&r.customer_ref, "customer ref")?;
    require(&r.idempotency_key, "idempotency key")?;
    require(&r.currency, "currency")?;
    if r.amount < Decimal::ZERO {
        return Err(ProviderError::Rejected(
            "amount must not be negative".into(),
        ));
    }
    Ok(())
}

fn decode<T: DeserializeOwned>(
    kind: RecordKind,
    id: &str,
    value: serde_json::Value,
) -> Result<T, ProviderError> {
    serde_json::from_value(value)
        .map_err(|e| ProviderError::BadResponse(format!("sandbox {} {id:?}: {e}", kind.as_str())))
}

/// A whole-batch failure, given to each charge of the batch.
fn each(e: &ProviderError) -> ProviderError {
    match e {
        ProviderError::Rejected(m) => ProviderError::Rejected(m.clone()),
        ProviderError::Timeout => ProviderError::Timeout,
        ProviderError::BadResponse(m) => ProviderError::BadResponse(m.clone()),
        ProviderError::BadSignature => ProviderError::BadSignature,
        ProviderError::Config(m) => ProviderError::Config(m.clone()),
        ProviderError::Unreachable(m) => ProviderError::Unreachable(m.clone()),
    }
}

type Answer = Result<PaymentOutcome, ProviderError>;

impl Inner {
    /// The charges, answered in order. A key asked more than once in one batch is answered
    /// as calls one after another would be: each later use after the one before is stored.
    pub(super) async fn charge_many(&self, requests: &[ChargeRequest]) -> Vec<Answer> {
        let mut answers: Vec<Option<Answer>> = (0..requests.len()).map(|_| None).collect();
        let mut pending = Vec::with_capacity(requests.len());
        for (i, r) in requests.iter().enumerate() {
            match check(r) {
                Err(e) => answers[i] = Some(Err(e)),
                Ok(()) => pending.push(i),
            }
        }
        while !pending.is_empty() {
            let mut seen = HashSet::new();
            let (now, later): (Vec<usize>, Vec<usize>) = pending
                .iter()
                .partition(|&&i| seen.insert(requests[i].idempotency_key.as_str()));
            for (i, answer) in self.charge_first_uses(requests, &now).await {
                answers[i] = Some(answer);
            }
            pending = later;
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(ProviderError::Unreachable("unanswered".into()))))
            .collect()
    }

    /// Charges `which` (indices into `requests`, their keys all different), or reads back
    /// what their keys stand for.
    async fn charge_first_uses(
        &self,
        requests: &[ChargeRequest],
        which: &[usize],
    ) -> Vec<(usize, Answer)> {
        match self.try_charge(requests, which).await {
            Ok(answers) => answers,
            Err(e) => which.iter().map(|&i| (i, Err(each(&e)))).collect(),
        }
    }

    /// Records by id in one read; none asked, none read.
    async fn read_many(
        &self,
        kind: RecordKind,
        ids: &[String],
    ) -> Result<HashMap<String, Versioned>, ProviderError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.store.get_many(kind, ids).await.map_err(store_failed)
    }

    async fn try_charge(
        &self,
        requests: &[ChargeRequest],
        which: &[usize],
    ) -> Result<Vec<(usize, Answer)>, ProviderError> {
        let mut answers = Vec::with_capacity(which.len());
        // 1. Claim the keys in one write; the ones claimed before are read back.
        let mut claims: Vec<(String, serde_json::Value)> = Vec::with_capacity(which.len());
        let mut fresh_ids: HashMap<&str, String> = HashMap::with_capacity(which.len());
        for &i in which {
            let r = &requests[i];
            let id = new_id("ch");
            let record = KeyRecord {
                id: id.clone(),
                owner: r.customer_ref.clone(),
            };
            claims.push((
                r.idempotency_key.clone(),
                encode(RecordKind::ChargeKey, &record)?,
            ));
            fresh_ids.insert(&r.idempotency_key, id);
        }
        let claimed = self
            .store
            .insert_many(RecordKind::ChargeKey, &claims)
            .await
            .map_err(store_failed)?;
        let taken: Vec<String> = which
            .iter()
            .map(|&i| &requests[i].idempotency_key)
            .filter(|k| !claimed.contains(*k))
            .cloned()
            .collect();
        let mut earlier = self.read_many(RecordKind::ChargeKey, &taken).await?;
        // 2. Each charge's id: fresh, or the one its key stands for (for this customer only).
        let mut to_make: Vec<(usize, String)> = Vec::new();
        let mut to_read: Vec<(usize, String)> = Vec::new();
        for &i in which {
            let r = &requests[i];
            let key = r.idempotency_key.as_str();
            if claimed.contains(key) {
                to_make.push((i, fresh_ids.remove(key).unwrap_or_default()));
                continue;
            }
            let Some(found) = earlier.remove(key) else {
                answers.push((
                    i,
                    Err(ProviderError::Unreachable(format!(
                        "sandbox charge_key: key {key:?} vanished"
                    ))),
                ));
                continue;
            };
            let known: KeyRecord = decode(RecordKind::ChargeKey, key, found.value)?;
            if known.owner != r.customer_ref {
                answers.push((
                    i,
                    Err(ProviderError::Rejected(
                        "idempotency key already used for another customer".into(),
                    )),
                ));
            } else {
                to_read.push((i, known.id));
            }
        }
        // 3. A key used before answers with its charge as it stands; a key whose charge was
        // never stored (the process stopped between the two writes) gets it now.
        if !to_read.is_empty() {
            let ids: Vec<String> = to_read.iter().map(|(_, id)| id.clone()).collect();
            let mut charges = self.read_many(RecordKind::Charge, &ids).await?;
            for (i, id) in to_read {
                match charges.remove(&id) {
                    Some(found) => {
                        let charge: ChargeRecord = decode(RecordKind::Charge, &id, found.value)?;
                        answers.push((i, Ok(charge.status.outcome(&id))));
                    }
                    None => to_make.push((i, id)),
                }
            }
        }
        if to_make.is_empty() {
            return Ok(answers);
        }
        // 4. The customers' cards in one read, then the charges in one write.
        let mut customers: Vec<String> = to_make
            .iter()
            .map(|(i, _)| requests[*i].customer_ref.clone())
            .collect();
        customers.sort();
        customers.dedup();
        let cards: HashMap<String, Option<TestCard>> = self
            .read_many(RecordKind::Customer, &customers)
            .await?
            .into_iter()
            .map(|(id, found)| {
                let c: CustomerRecord = decode(RecordKind::Customer, &id, found.value)?;
                Ok((id, c.card))
            })
            .collect::<Result<_, ProviderError>>()?;
        let mut made: Vec<(usize, String, Status)> = Vec::with_capacity(to_make.len());
        let mut records = Vec::with_capacity(to_make.len());
        for (i, id) in to_make {
            let r = &requests[i];
            let status = match cards.get(&r.customer_ref).copied().flatten() {
                None => Status::failed(NO_PAYMENT_METHOD),
                Some(TestCard::Succeeds) => Status::Succeeded,
                Some(TestCard::Declined) => Status::failed(DECLINED),
                Some(TestCard::Pending) => Status::Pending,
            };
            let charge = ChargeRecord {
                customer_ref: r.customer_ref.clone(),
                amount: r.amount,
                currency: r.currency.clone(),
                status: status.clone(),
                refunds: Vec::new(),
            };
            records.push((id.clone(), encode(RecordKind::Charge, &charge)?));
            made.push((i, id, status));
        }
        let created = self
            .store
            .insert_many(RecordKind::Charge, &records)
            .await
            .map_err(store_failed)?;
        // A concurrent retry under the same key created the charge first: its answer stands.
        let raced: Vec<String> = made
            .iter()
            .filter(|(_, id, _)| !created.contains(id))
            .map(|(_, id, _)| id.clone())
            .collect();
        let mut theirs = self.read_many(RecordKind::Charge, &raced).await?;
        for (i, id, status) in made {
            if created.contains(&id) {
                answers.push((i, Ok(status.outcome(&id))));
                continue;
            }
            let answer = match theirs.remove(&id) {
                Some(found) => decode::<ChargeRecord>(RecordKind::Charge, &id, found.value)
                    .map(|c| c.status.outcome(&id)),
                None => Err(unknown_payment(&id)),
            };
            answers.push((i, answer));
        }
        Ok(answers)
    }
}
