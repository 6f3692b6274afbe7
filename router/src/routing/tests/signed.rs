//! A mesh whose routers sign their records (issue #20): it converges as
//! an unsigned one does, records relayed and reassembled included, and a
//! neighbour cannot make it believe another router's record, nor drop or
//! move one with an advertisement.

use std::time::Duration;

use super::harness::{Net, TestAuth};
use super::{check_forwarding, edge, id, ids, line3};
use crate::routing::{Advert, ControlMessage, RecordAuth, RouterId, Signature};

/// Deltas, full lists assembled by relays, restarts (a new instance and a
/// reused one) and a partition healed: every router's table is right.
#[test]
fn a_signed_mesh_converges_through_relays_restarts_and_partitions() {
    let names = ids(&["A", "B", "C", "D"]);
    let edges = vec![edge("A", "B", 1), edge("B", "C", 1), edge("C", "D", 1)];
    let mut net = Net::signed(&names, &edges);
    let (a, b, c, d) = (id("A"), id("B"), id("C"), id("D"));
    net.add_address(&d, "q");
    net.add_address(&d, "r");
    net.add_address(&b, "q");
    net.pump();
    net.remove_address(&d, "r");
    net.pump();
    net.check_paths(&edges).unwrap();
    net.check_addresses(&["q", "r"]).unwrap();
    assert_eq!(net.table(&a).routers_for("q").count(), 2);

    // C - D cut and healed after A forgot nothing: D's full list reaches
    // A from C, which assembled it from D's deltas.
    net.cut(&c, &d);
    net.pump();
    net.add_address(&d, "s");
    net.run_for(Duration::from_secs(1));
    net.connect(&c, &d, 1);
    net.run_for(Duration::from_secs(12));
    net.check_addresses(&["q", "r", "s"]).unwrap();
    assert_eq!(net.table(&a).routers_for("s").collect::<Vec<_>>(), [&d]);

    // B restarts with a new instance, then with a reused one: it moves
    // past its old records only on their signatures.
    for instance in [2, 2] {
        net.isolate(&b);
        net.pump();
        net.start(&b, instance);
        net.connect(&a, &b, 1);
        net.connect(&b, &c, 1);
        net.run_for(Duration::from_secs(12));
        net.add_address(&b, "q");
        net.run_for(Duration::from_secs(1));
        net.check_paths(&edges).unwrap();
        check_forwarding(&net).unwrap();
        net.check_addresses(&["q", "r", "s"]).unwrap();
    }
}

/// Records of C with no links, one version above C's own, sent to A by
/// its neighbour B: unsigned, signed by B, and bearing C's signature of
/// another record. A believes none: C stays where it was, and so does its
/// address. And address records of C claiming one more address: refused.
#[test]
fn forged_records_of_another_router_are_refused() {
    let (names, edges) = line3();
    let mut net = Net::signed(&names, &edges);
    let (a, b, c) = (id("A"), id("B"), id("C"));
    net.add_address(&c, "q");
    net.run_for(Duration::from_secs(10));
    let ls = net.nodes[&a].ls.get(&c).unwrap().clone();
    let ma = net.nodes[&a].mobile.get(&c).unwrap().clone();
    let by_b = |payload: &[u8]| TestAuth(b.clone()).sign(payload).ok();
    let forged_ls = |seq: u64, sig: Option<Signature>| ControlMessage::LinkState {
        id: c.clone(),
        instance: ls.version.instance,
        seq,
        neighbors: Vec::new(),
        sig,
    };
    let forged_ma =
        |seq: u64, full: bool, sig: Option<Signature>| ControlMessage::MobileAddresses {
            id: c.clone(),
            instance: ma.version.instance,
            seq,
            added: if full {
                vec!["q".into(), "evil".into()]
            } else {
                vec!["evil".into()]
            },
            removed: Vec::new(),
            full,
            sig,
        };
    let next = ls.version.seq + 1;
    let forgeries = [
        forged_ls(next, None),
        forged_ls(next, by_b(b"anything")),
        forged_ls(next, ls.sig.clone()),
        forged_ma(ma.version.seq + 1, false, None),
        forged_ma(ma.version.seq + 1, false, ma.sig.clone()),
        forged_ma(ma.version.seq + 1, true, by_b(b"anything")),
    ];
    let delivered = net.delivered;
    for forged in forgeries {
        let now = net.now;
        net.nodes
            .get_mut(&a)
            .unwrap()
            .handle_message(&b, forged, now);
    }
    net.pump();
    assert_eq!(net.nodes[&a].ls.get(&c), Some(&ls));
    assert_eq!(net.nodes[&a].mobile.get(&c), Some(&ma));
    assert!(net.table(&a).is_reachable(&c));
    assert_eq!(net.table(&a).routers_for("q").collect::<Vec<_>>(), [&c]);
    assert_eq!(net.table(&a).routers_for("evil").count(), 0);
    assert_eq!(net.delivered, delivered, "a refused record floods nowhere");
}

/// Advertisements are not signed: one claiming a newer instance of C does
/// not make A drop C's records, and one claiming a newer record of A
/// itself does not move A (it asks for the record, which never comes).
#[test]
fn an_advertisement_neither_drops_a_router_nor_moves_one_past_itself() {
    let (names, edges) = line3();
    let mut net = Net::signed(&names, &edges);
    let (a, b, c) = (id("A"), id("B"), id("C"));
    net.add_address(&c, "q");
    net.run_for(Duration::from_secs(10));
    let ls = net.nodes[&a].ls.version(&c).unwrap();
    let instance = net.nodes[&a].instance();
    let advert = |id: &RouterId, instance: u64| ControlMessage::RouterAdvert {
        id: b.clone(),
        adverts: vec![Advert {
            id: id.clone(),
            instance: instance + 1,
            ls_seq: 7,
            ma_seq: 7,
        }],
    };
    for forged in [advert(&c, ls.instance), advert(&a, instance)] {
        let now = net.now;
        net.nodes
            .get_mut(&a)
            .unwrap()
            .handle_message(&b, forged, now);
    }
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.nodes[&a].ls.version(&c), Some(ls));
    assert_eq!(net.nodes[&a].instance(), instance);
    assert_eq!(net.table(&a).routers_for("q").collect::<Vec<_>>(), [&c]);
}

/// An RA naming routers nobody has (256 of them, as a hostile neighbour
/// may send every round) costs a request each, not memory for good: the
/// stamps that keep requests apart are forgotten after a
/// `hello_interval`.
#[test]
fn requests_for_routers_nobody_has_are_not_remembered_for_good() {
    let (names, edges) = line3();
    let mut net = Net::signed(&names, &edges);
    let (a, b) = (id("A"), id("B"));
    net.run_for(Duration::from_secs(10));
    let adverts = (0..256)
        .map(|i| Advert {
            id: id(&format!("ghost-{i}")),
            instance: 1,
            ls_seq: 1,
            ma_seq: 1,
        })
        .collect();
    let now = net.now;
    net.nodes.get_mut(&a).unwrap().handle_message(
        &b,
        ControlMessage::RouterAdvert {
            id: b.clone(),
            adverts,
        },
        now,
    );
    assert!(net.nodes[&a].requested.len() >= 256);
    net.run_for(Duration::from_secs(3));
    assert!(
        net.nodes[&a].requested.len() < 8,
        "{} request stamps kept",
        net.nodes[&a].requested.len()
    );
}
