//! The offer collector on spoiled and lying offers.

use super::*;

#[derive(Debug, Clone)]
enum SeqOp {
    Drop(Index),
    Repeat(Index),
    Swap(Index, Index),
}

fn seq_op() -> impl Strategy<Value = SeqOp> {
    prop_oneof![
        any::<Index>().prop_map(SeqOp::Drop),
        any::<Index>().prop_map(SeqOp::Repeat),
        (any::<Index>(), any::<Index>()).prop_map(|(i, j)| SeqOp::Swap(i, j)),
    ]
}

fn apply_seq(parts: &mut Vec<Vec<u8>>, ops: &[SeqOp]) {
    for op in ops {
        let n = parts.len();
        if n == 0 {
            return;
        }
        match op {
            SeqOp::Drop(i) => {
                parts.remove(i.index(n));
            }
            SeqOp::Repeat(i) => {
                let p = parts[i.index(n)].clone();
                parts.insert(i.index(n), p);
            }
            SeqOp::Swap(i, j) => parts.swap(i.index(n), j.index(n)),
        }
    }
}

/// A valid offer: its entries and the bodies of the parts it is cut into.
fn offer_parts() -> impl Strategy<Value = (Vec<OfferEntry>, Vec<Vec<u8>>)> {
    // Empty files too: a repeated part of them adds up to the same total.
    let size = prop_oneof![Just(0), 0..1u64 << 40];
    let entry = (text(12), size).prop_map(|(path, size)| OfferEntry::file(path, size));
    (vec(entry, 1..24), vec(any::<Index>(), 0..4)).prop_map(|(entries, cuts)| {
        let total_entries = entries.len() as u32;
        let total_bytes = entries.iter().map(|e| e.size).sum();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(entries.len())).collect();
        cuts.extend([0, entries.len()]);
        cuts.sort_unstable();
        cuts.dedup();
        let parts = cuts
            .windows(2)
            .map(|w| OfferPart {
                total_entries,
                total_bytes,
                entries: entries[w[0]..w[1]].to_vec(),
            })
            .map(|p| enc_offer(&p).expect("a small offer part"))
            .collect();
        (entries, parts)
    })
}

/// Feeds `parts` to a collector as a receiver does (decode, add, stop at the
/// first error or at the complete offer) and checks what it returns.
fn collect(
    parts: &[Vec<u8>],
) -> std::result::Result<Option<(Vec<OfferEntry>, u64)>, TestCaseError> {
    let decoded: Vec<OfferPart> = parts
        .iter()
        .map_while(|b| OfferPart::decode(b).ok())
        .collect();
    let arrived = decoded.clone();
    let (got, used) = bounded("OfferCollector::add", &parts.concat(), move || {
        let mut c = OfferCollector::default();
        for (i, part) in decoded.into_iter().enumerate() {
            match c.add(part) {
                Ok(Some(offer)) => return (Some(offer), i + 1),
                Ok(None) => {}
                Err(_) => return (None, i + 1),
            }
        }
        (None, 0)
    })?;
    if let Some((entries, sum)) = &got {
        let used = &arrived[..used];
        let last = &used[used.len() - 1];
        prop_assert!(
            used.iter()
                .all(|p| (p.total_entries, p.total_bytes) == (last.total_entries, last.total_bytes)),
            "parts with different totals made one offer"
        );
        prop_assert_eq!(entries.len(), last.total_entries as usize);
        prop_assert_eq!(*sum, last.total_bytes);
        prop_assert_eq!(entries.iter().map(|e| e.size).sum::<u64>(), *sum);
        let added: Vec<OfferEntry> = used.iter().flat_map(|p| p.entries.clone()).collect();
        prop_assert_eq!(entries, &added, "the entries, in the order they arrived");
    }
    Ok(got)
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn offer_collector_on_spoiled_offers(
        (entries, mut parts) in offer_parts(),
        ops in vec(seq_op(), 0..3),
        mutations in vec((any::<Index>(), vec(mutation(), 1..3)), 0..3),
    ) {
        let pristine = ops.is_empty() && mutations.is_empty();
        apply_seq(&mut parts, &ops);
        for (which, m) in &mutations {
            let i = which.index(parts.len().max(1));
            if let Some(p) = parts.get_mut(i) {
                *p = mutate(std::mem::take(p), m);
            }
        }
        let got = collect(&parts)?;
        if pristine {
            let sum = entries.iter().map(|e| e.size).sum();
            prop_assert_eq!(got, Some((entries, sum)));
        }
    }

    /// Parts that decode but lie: totals that change between parts or do not
    /// add up, sizes that overflow, or the most files an offer may announce.
    #[test]
    fn offer_collector_on_lying_parts(parts in vec(offer_part(), 1..6)) {
        let bodies: Vec<Vec<u8>> =
            parts.iter().map(|p| enc_offer(p).expect("small part")).collect();
        collect(&bodies)?;
    }
}
