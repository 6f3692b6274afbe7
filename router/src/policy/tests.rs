use std::sync::Arc;

use super::*;
use crate::config::{Config, GroupConfig, VhostConfig};

fn group(name: &str, users: &[&str], send: &[&str], receive: &[&str]) -> GroupConfig {
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect();
    GroupConfig {
        name: name.into(),
        users: v(users),
        send: v(send),
        receive: v(receive),
        dynamic_reply: false,
        ..Default::default()
    }
}

fn policy() -> Policy {
    let mut config = Config::embedded_default();
    config.vhosts = vec![
        VhostConfig {
            name: "Tenant-A".into(),
            max_connections: Some(2),
            max_connections_per_user: Some(1),
            max_message_size: None,
            max_links_per_connection: None,
            groups: vec![
                group(
                    "apps",
                    &["alice", "bob"],
                    &["orders", "events.*"],
                    &["replies/*"],
                ),
                group("ops", &["alice"], &[], &["*"]),
                group("guests", &["$anonymous"], &[], &["public"]),
            ],
        },
        VhostConfig {
            name: "b".into(),
            max_connections: None,
            max_connections_per_user: None,
            max_message_size: None,
            max_links_per_connection: None,
            groups: vec![group("all", &["*"], &["*"], &["*"])],
        },
    ];
    config.router.default_vhost = Some("b".into());
    Policy::from_config(&config).unwrap()
}

#[test]
fn the_vhost_is_the_hostname_else_the_default() {
    let p = policy();
    assert_eq!(p.vhost(Some("tenant-a")).unwrap().name(), "Tenant-A");
    assert_eq!(p.vhost(Some("nowhere")).unwrap().name(), "b");
    assert_eq!(p.vhost(None).unwrap().name(), "b");
}

#[test]
fn a_user_may_do_what_its_groups_allow_together() {
    let p = policy();
    let a = p.vhost(Some("tenant-a")).unwrap();
    let alice = a.tenant(Some("alice"));
    assert!(alice.may_send("orders") && alice.may_send("events.x.y"));
    assert!(!alice.may_send("events") && !alice.may_send("eventsx") && !alice.may_send("other"));
    assert!(alice.may_receive("anything"), "ops receives everything");
    let bob = a.tenant(Some("bob"));
    assert!(bob.may_receive("replies/1") && !bob.may_receive("orders"));
    let carol = a.tenant(Some("carol"));
    assert!(!carol.may_send("orders") && !carol.may_receive("public"));
    let anonymous = a.tenant(None);
    assert!(anonymous.may_receive("public") && !anonymous.may_receive("orders"));
    assert_eq!(alice.scope("orders"), "Tenant-A/orders");
    assert_eq!(unscoped("Tenant-A/orders/x"), "orders/x");
}

#[test]
fn connections_are_counted_per_vhost_and_per_user() {
    let p = policy();
    let a = p.vhost(Some("tenant-a")).unwrap();
    let admissions = Arc::new(Admissions::default());
    let first = admissions
        .admit(a.name(), Some("alice"), &a.limits)
        .unwrap();
    assert!(
        admissions
            .admit(a.name(), Some("alice"), &a.limits)
            .is_err(),
        "one per user"
    );
    let second = admissions.admit(a.name(), Some("bob"), &a.limits).unwrap();
    assert!(
        admissions
            .admit(a.name(), Some("carol"), &a.limits)
            .is_err(),
        "two per vhost"
    );
    drop(first);
    assert_eq!(admissions.count("Tenant-A"), 1);
    admissions
        .admit(a.name(), Some("alice"), &a.limits)
        .unwrap();
    drop(second);
}

#[test]
fn a_group_limit_replaces_the_vhost_one_and_the_most_generous_group_wins() {
    let mut config = Config::embedded_default();
    let limited =
        |name: &str, users: &[&str], size: Option<u64>, conns: Option<usize>| GroupConfig {
            max_message_size: size,
            max_connections_per_user: conns,
            ..group(name, users, &["*"], &["*"])
        };
    config.vhosts = vec![VhostConfig {
        name: "iot".into(),
        max_connections: Some(100),
        max_connections_per_user: Some(5),
        max_message_size: Some(1000),
        max_links_per_connection: Some(7),
        groups: vec![
            limited(
                "devices",
                &["$anonymous", "alice", "bob"],
                Some(200),
                Some(1),
            ),
            limited("backends", &["alice"], Some(5000), None),
            limited("plain", &["carol"], None, None),
        ],
    }];
    let p = Policy::from_config(&config).unwrap();
    let v = p.vhost(Some("iot")).unwrap();
    let limits = |user| v.tenant(user).limits;
    let device = limits(None);
    assert_eq!(
        (device.max_message_size, device.max_connections_per_user),
        (Some(200), Some(1))
    );
    assert_eq!(device.max_links_per_connection, Some(7), "the vhost's");
    assert_eq!(device.max_connections, Some(100), "always the vhost's");
    let alice = limits(Some("alice"));
    assert_eq!(
        (alice.max_message_size, alice.max_connections_per_user),
        (Some(5000), Some(1)),
        "the larger of her two groups' sizes; the one group setting connections"
    );
    assert_eq!(limits(Some("bob")).max_message_size, Some(200));
    let carol = limits(Some("carol"));
    assert_eq!(
        (carol.max_message_size, carol.max_connections_per_user),
        (Some(1000), Some(5)),
        "a group without limits leaves the vhost's"
    );
}
