//! Every sample of the book, one test per sample; the book includes the regions between
//! `ANCHOR` markers. Run `BOOK_BLESS=1 cargo test -p book-code` to regenerate the texts the
//! book shows verbatim (a law failure, the level table) after an intended change.

use std::path::Path;

use book_code::custom::{Average, BoundingBox};
use lattice_core::{Lattice, laws};

/// Compares `actual` with the committed file the book includes (or rewrites it when blessing).
fn verbatim(file: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/generated").join(file);
    if std::env::var_os("BOOK_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        committed.trim_end(),
        actual.trim_end(),
        "{} is stale: rerun with BOOK_BLESS=1 and review the diff",
        path.display()
    );
}

#[test]
fn why_lattices() {
    // ANCHOR: converge
    use lattice_core::{Lattice, Max, SetUnion};

    // Three replicas of a "highest score, and who has played" record.
    type Record = (Max<u32>, SetUnion<&'static str>);
    let updates: Vec<Record> = vec![
        (Max::new(10), SetUnion::from_iter(["ada"])),
        (Max::new(7), SetUnion::from_iter(["bob"])),
        (Max::new(12), SetUnion::from_iter(["ada", "cy"])),
    ];
    // Each replica hears the updates in its own order, some of them twice.
    let orders: [&[usize]; 3] = [&[0, 1, 2], &[2, 0, 1, 0], &[1, 1, 2, 0, 2]];
    let replicas: Vec<Record> = orders
        .iter()
        .map(|order| {
            let mut replica = Record::bottom();
            for &i in *order {
                replica.merge(updates[i].clone());
            }
            replica
        })
        .collect();
    // No coordination, no consensus, and yet:
    assert!(replicas.iter().all(|r| *r == replicas[0]));
    assert_eq!(*replicas[0].0.get(), 12);
    assert_eq!(replicas[0].1.len(), 3);
    // ANCHOR_END: converge
}

#[test]
fn builtin_lattices() {
    // ANCHOR: scalars
    use lattice_core::{BoolOr, Lattice, Max, Min};

    let mut latest = Max::new(3_u64);
    latest.merge(Max::new(9));
    latest.merge(Max::new(5)); // smaller: no change
    assert_eq!(*latest.get(), 9);

    let mut first_seen = Min::new(1_700_000_000_u64);
    assert!(first_seen.merge(Min::new(1_650_000_000))); // `merge` says whether it changed
    assert_eq!(*first_seen.get(), 1_650_000_000);

    let mut flag = BoolOr::new(false);
    flag.merge(BoolOr::new(true));
    assert!(flag.get()); // once true, always true
    // ANCHOR_END: scalars

    // ANCHOR: collections
    use lattice_core::{MapLattice, SetUnion};

    let mut tags = SetUnion::from_iter(["rust"]);
    tags.merge(SetUnion::from_iter(["crdt", "rust"]));
    assert_eq!(tags.len(), 2);

    // A map merges key-wise: keys are united, values under the same key merged.
    let mut views: MapLattice<&str, Max<u32>> = MapLattice::from_iter([("home", Max::new(3))]);
    views.merge(MapLattice::from_iter([("home", Max::new(1)), ("about", Max::new(7))]));
    assert_eq!(views.get("home"), Some(&Max::new(3)));
    assert_eq!(views.get("about"), Some(&Max::new(7)));
    // ANCHOR_END: collections

    // ANCHOR: products
    use lattice_core::{DomPair, Pair};

    // Products merge each side independently (tuples up to four work the same way).
    let mut range = Pair::new(Min::new(10_i32), Max::new(10_i32));
    range.merge(Pair::new(Min::new(4), Max::new(6)));
    assert_eq!((*range.first.get(), *range.second.get()), (4, 10));

    // A dominating pair: the greater key wins outright; equal keys merge their values.
    let mut versioned = DomPair::new(1_u64, SetUnion::from_iter(["draft"]));
    versioned.merge(DomPair::new(2, SetUnion::from_iter(["final"])));
    versioned.merge(DomPair::new(1, SetUnion::from_iter(["late edit"]))); // older: ignored
    assert_eq!(versioned.value().iter().copied().collect::<Vec<_>>(), ["final"]);
    // ANCHOR_END: products

    // ANCHOR: registers
    use lattice_core::{Lww, Priority, Stamp};

    // Last writer wins, by (time, writer id): every replica picks the same winner.
    let mut title = Lww::new(Stamp::new(100, 1), "Draft");
    title.merge(Lww::new(Stamp::new(105, 2), "Anna in Rust"));
    title.merge(Lww::new(Stamp::new(103, 3), "Too late"));
    assert_eq!(title.value(), Some(&"Anna in Rust"));

    // Lowest priority wins (a cheapest route, a best offer).
    let mut route = Priority::new(30_u32, "via Paris");
    route.merge(Priority::new(12, "via Frankfurt"));
    assert_eq!(route.value(), Some(&"via Frankfurt"));
    // ANCHOR_END: registers

    // ANCHOR: counters
    use lattice_core::{GCounter, PNCounter};

    // Each replica counts its own increments; merging takes the maximum per replica.
    let mut here = GCounter::new();
    here.increment(1, 3);
    let mut there = GCounter::new();
    there.increment(2, 4);
    here.merge(there.clone());
    here.merge(there); // a duplicate delivery changes nothing
    assert_eq!(here.value(), 7);

    let mut stock = PNCounter::new();
    stock.increment(1, 10);
    stock.decrement(2, 3);
    assert_eq!(stock.value(), 7);
    // ANCHOR_END: counters

    // ANCHOR: option
    // `Option<L>` is a lattice with `None` as ⊥; `Box<L>` merges what it points to.
    let mut maybe: Option<Max<u8>> = None;
    maybe.merge(Some(Max::new(4)));
    assert_eq!(maybe, Some(Max::new(4)));
    // ANCHOR_END: option
}

#[test]
fn deltas_and_parts() {
    // ANCHOR: deltas
    use lattice_core::delta::Decompose;
    use lattice_core::{Lattice, OrSet, laws};

    let mut writer = OrSet::<u32, u8>::new();
    for n in 0..10_000 {
        writer.add(1, n);
    }
    let mut replica = writer.clone();

    // A change reports its delta: one member, not ten thousand.
    let before = writer.clone();
    let delta = writer.add_delta(2, 77_777);
    laws::try_check_delta(&before, &delta, &writer).unwrap(); // δ ≤ new, old ⊔ δ = new
    assert_eq!(delta.weight(), 1);
    replica.merge(delta);
    assert_eq!(replica, writer);

    // A whole state goes in bounded parts that join back to it, in any order.
    let parts = writer.clone().split(4_000);
    assert_eq!(parts.len(), 3);
    laws::try_check_split(&writer, 4_000).unwrap();
    let rebuilt = parts.into_iter().rev().fold(OrSet::new(), Lattice::join);
    assert_eq!(rebuilt, writer);
    // ANCHOR_END: deltas
}

#[test]
fn custom_lattice_passes_the_laws_and_average_fails() {
    // ANCHOR: check_all
    let a = BoundingBox::point(0, 0);
    let b = BoundingBox::point(5, -2);
    let c = BoundingBox::point(-1, 9);
    laws::check_all(&[a, b, c]); // every single, pair and triple, plus ⊥
    assert_eq!(a.join(b).join(c), BoundingBox::Box { min_x: -1, min_y: -2, max_x: 5, max_y: 9 });
    // ANCHOR_END: check_all

    // ANCHOR: average_fails
    let violation = laws::try_check_all(&[Average(2.0), Average(4.0)]).unwrap_err();
    println!("{violation}");
    // ANCHOR_END: average_fails
    verbatim("law-failure.txt", &violation.to_string());
}

#[test]
fn derive_composes_structs() {
    // ANCHOR: derive
    use lattice_core::{Lattice, Lww, Max, OrSet, SetUnion, Stamp};

    /// A user's session, replicated on every device.
    #[derive(Lattice, Clone, Debug, Default, PartialEq)]
    struct Session {
        /// Last activity (ms).
        last_seen: Max<u64>,
        /// Pages visited.
        pages: SetUnion<String>,
        /// Items in the cart (add-wins: a concurrent add beats a remove).
        cart: OrSet<String>,
        /// The display name, last writer wins.
        name: Lww<String>,
    }

    let mut phone = Session::default();
    phone.last_seen.merge(Max::new(1_000));
    phone.cart.add(1, "book".to_owned());
    let mut laptop = Session::default();
    laptop.pages.merge(SetUnion::from_iter(["/checkout".to_owned()]));
    laptop.name.merge(Lww::new(Stamp::new(5, 2), "Ada".to_owned()));

    let merged = phone.clone().join(laptop.clone());
    assert_eq!(merged, laptop.join(phone)); // field by field, in any order
    assert!(merged.cart.contains(&"book".to_owned()));
    // ANCHOR_END: derive

    // ANCHOR: dominating
    /// A document version: the higher `version` wins outright; equal versions merge.
    #[derive(Lattice, Clone, Debug, PartialEq)]
    struct Doc {
        #[lattice(dominating)]
        version: u64,
        editors: SetUnion<&'static str>,
    }

    let mut doc = Doc { version: 1, editors: SetUnion::from_iter(["ada"]) };
    doc.merge(Doc { version: 1, editors: SetUnion::from_iter(["bob"]) });
    assert_eq!(doc.editors.len(), 2);
    doc.merge(Doc { version: 2, editors: SetUnion::from_iter(["cy"]) });
    assert_eq!((doc.version, doc.editors.len()), (2, 1));
    // ANCHOR_END: dominating
}

#[test]
fn causality() {
    // ANCHOR: vector_clock
    use lattice_core::{CausalOrder, Lattice, VectorClock};

    let mut alice = VectorClock::new();
    alice.increment(1);
    let mut bob = alice.clone(); // bob has seen alice's event...
    bob.increment(2); // ...and then acts
    assert_eq!(alice.compare(&bob), CausalOrder::Before);
    alice.increment(1); // alice acts without seeing bob
    assert_eq!(alice.compare(&bob), CausalOrder::Concurrent);
    alice.merge(bob.clone());
    assert_eq!(alice.compare(&bob), CausalOrder::After);
    // ANCHOR_END: vector_clock

    // ANCHOR: multi_value
    use lattice_core::MultiValue;

    let mut a = MultiValue::<&str>::new();
    a.write(1, "blue");
    let mut b = MultiValue::<&str>::new();
    b.write(2, "green"); // concurrent with "blue"
    let mut merged = a.join(b);
    let mut siblings: Vec<&str> = merged.values().copied().collect();
    siblings.sort();
    assert_eq!(siblings, ["blue", "green"]); // both kept: nobody's write is lost
    merged.write(1, "teal"); // written after reading both: supersedes them
    assert_eq!(merged.values().copied().collect::<Vec<_>>(), ["teal"]);
    // ANCHOR_END: multi_value

    // ANCHOR: or_set
    use lattice_core::OrSet;

    let mut phone = OrSet::new();
    phone.add(1, "milk");
    let mut laptop = phone.clone();
    laptop.remove(&"milk"); // removes the add it has seen...
    phone.add(1, "milk"); // ...not this concurrent re-add
    let merged = phone.join(laptop);
    assert!(merged.contains(&"milk")); // add wins
    // ANCHOR_END: or_set

    // ANCHOR: lww_ties
    use lattice_core::{Lww, Stamp};

    // Two writes in the same microsecond from different writers.
    let x = Lww::new(Stamp::new(42, 7), "from writer 7");
    let y = Lww::new(Stamp::new(42, 9), "from writer 9");
    // The writer id breaks the tie, so both merge orders agree.
    assert_eq!(x.clone().join(y.clone()), y.clone().join(x.clone()));
    assert_eq!(x.join(y).value(), Some(&"from writer 9"));
    // ANCHOR_END: lww_ties
}

#[test]
fn architecture() {
    // ANCHOR: ring
    use anna_kvs::{Factor, Replication, Topology};

    // Three nodes of four actor threads; each key on 2 nodes × 1 thread.
    let ring = Topology::new(
        vec!["10.0.0.1:7100".into(), "10.0.0.2:7100".into(), "10.0.0.3:7100".into()],
        vec![4, 4, 4],
        Replication::new(Factor::Count(2), Factor::Count(1)),
    );
    let owners = ring.owners(b"user:42", None);
    assert_eq!(owners.len(), 2);
    assert_ne!(owners[0].node, owners[1].node); // two different nodes
    // Every node and client computes the same owners: CRC32 rings, no coordination.
    assert_eq!(owners, ring.owners(b"user:42", None));
    // ANCHOR_END: ring
}

#[test]
fn embedded_node() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: node
    use anna_kvs::{Eventual, Node, NodeConfig, Replication};
    use lattice_core::{Lww, Stamp};

    let config = NodeConfig {
        threads: 2,
        pin_threads: false,
        replication: Replication::FULL,
        ..NodeConfig::default()
    };
    let node: Node<Eventual> = Node::start(config)?;
    let mut handle = node.handle();
    // `true`: the serving actor stamps the write with its clock.
    handle.put("greeting", Lww::new(Stamp::default(), Some("hello".into())), true)?;
    let value = handle.get("greeting")?.and_then(|v| v.value().cloned().flatten());
    assert_eq!(value.as_deref(), Some(&b"hello"[..]));
    node.shutdown();
    // ANCHOR_END: node
    Ok(())
}

#[test]
fn durability() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("anna-book-durability-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // ANCHOR: durability
    use anna_kvs::{Eventual, Fsync, Node, NodeConfig, Persistence};
    use lattice_core::{Lww, Stamp};

    let config = NodeConfig {
        threads: 2,
        pin_threads: false,
        persistence: Persistence {
            dir: Some(dir.clone()),
            fsync: Fsync::Always, // acknowledged only once on disk
            ..Persistence::default()
        },
        ..NodeConfig::default()
    };
    let node: Node<Eventual> = Node::start(config.clone())?;
    let (id, first_life) = node.identity();
    let mut handle = node.handle();
    handle.put("greeting", Lww::new(Stamp::default(), Some("hello".into())), true)?;
    node.shutdown();

    // The same directory: the same node, in its next life, with what it acknowledged.
    let node: Node<Eventual> = Node::start(config)?;
    let (same_id, next_life) = node.identity();
    assert_eq!(same_id, id);
    assert!(next_life > first_life);
    let value = node.handle().get("greeting")?.and_then(|v| v.value().cloned().flatten());
    assert_eq!(value.as_deref(), Some(&b"hello"[..]));
    node.shutdown();
    // ANCHOR_END: durability
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn the_level_table_in_the_book_is_the_one_the_tests_count() {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../anna-kvs/src/levels/mod.rs"),
    )
    .unwrap();
    let table: Vec<&str> = source
        .lines()
        .skip_while(|l| !l.contains("level-table:begin"))
        .skip(1)
        .take_while(|l| !l.contains("level-table:end"))
        .map(|l| l.trim_start_matches("//!").trim())
        .collect();
    assert!(table.len() >= 12, "{table:?}");
    verbatim("level-table.md", &table.join("\n"));
}

#[test]
fn client_sessions_over_a_running_server() -> Result<(), Box<dyn std::error::Error>> {
    use anna_kvs::native::FrontEndConfig;
    use anna_kvs::redis::RedisConfig;
    use anna_kvs::server::{RunningServer, ServerConfig};
    let server = RunningServer::start(ServerConfig {
        redis: RedisConfig { port: 0, ..RedisConfig::default() },
        native: Some(FrontEndConfig { port: 0, ..FrontEndConfig::default() }),
        node: anna_kvs::NodeConfig {
            threads: 2,
            pin_threads: false,
            ..ServerConfig::default().node
        },
        ..ServerConfig::default()
    })?;
    let address = server.native_addr.clone().expect("native port on");
    // ANCHOR: client
    use anna_kvs::client::Client;
    use anna_kvs::levels::{ReadYourWritesSession, lww_bytes};
    use anna_kvs::redis::{RedisOp, RedisOpOutput, RedisValue};

    // Learns the ring from one node, then routes each key to one of its owners.
    let mut client = Client::<RedisValue>::connect(&[address.as_str()])?;

    // Redis-style operations on the same keys redis-cli sees.
    assert_eq!(client.apply("visits", RedisOp::IncrBy(5))?, RedisOpOutput::Int(5));

    // A consistency level's session runs over the client unchanged.
    let mut session = ReadYourWritesSession::new(client.client_id());
    let key = "greeting".into();
    session.put(&mut client, &key, "hello".into())?;
    let read = session.get(&mut client, &key)?;
    assert_eq!(lww_bytes(read.as_ref()).as_deref(), Some(&b"hello"[..]));
    // ANCHOR_END: client
    drop(client);
    server.stop();
    Ok(())
}
