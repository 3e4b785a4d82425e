//! Each adapter's mapping against the response each seed quotes (seed 000), field by field.

use serde_json::{json, Value};

use super::{digitalocean, linode, vultr, Adapter};
use crate::inventory::model::{CloudProvider, ResourceKind};

fn vultr_block() -> Value {
    json!({
        "id": "ae6c4452-b93b-4f4d-b8c1-2cea28d99fb8",
        "date_created": "2025-11-14T18:12:48+00:00",
        "cost": 1,
        "pending_charges": 0.01,
        "status": "active",
        "size_gb": 10,
        "region": "lax",
        "attached_to_instance": "",
        "attached_to_instance_ip": "",
        "attached_to_instance_label": "",
        "label": "sdtest",
        "mount_id": "lax-ae6c4452b93b4f",
        "block_type": "high_perf",
        "os_id": 0,
        "snapshot_id": "0",
        "bootable": false
    })
}

fn do_volume() -> Value {
    json!({
        "id": "3b6381a6-c187-11f0-a93d-0a58ac125cb7",
        "name": "sd-test-do",
        "created_at": "2025-11-14T18:25:00Z",
        "description": "",
        "droplet_ids": [529967704],
        "region": { "name": "Atlanta 1", "slug": "atl1", "available": false },
        "size_gigabytes": 10,
        "filesystem_type": "ext4",
        "filesystem_label": "",
        "tags": null
    })
}

fn linode_bucket() -> Value {
    json!({
        "hostname": "sdtest.us-sea-1.linodeobjects.com",
        "label": "sdtest",
        "created": "2025-11-14T18:14:48",
        "region": "us-sea",
        "cluster": "us-sea-1",
        "size": 0,
        "objects": 0,
        "endpoint_type": "E1",
        "s3_endpoint": "us-sea-1.linodeobjects.com"
    })
}

#[test]
fn a_vultr_block_maps_as_the_seed_says() {
    let r = vultr::map(&vultr_block()).expect("map");
    assert_eq!(r.kind, ResourceKind::Volume);
    assert_eq!(r.provider, CloudProvider::Vultr);
    assert_eq!(
        r.provider_resource_id,
        "ae6c4452-b93b-4f4d-b8c1-2cea28d99fb8"
    );
    assert_eq!(r.name, "sdtest");
    assert_eq!(r.size_gb, Some(10));
    assert_eq!(r.region, "lax");
    assert_eq!(r.status, "active");
    assert_eq!(r.attached_to_instance, None, "empty is none");
    assert_eq!(r.attached_to_instance_label, None);
    assert_eq!(r.mount_id.as_deref(), Some("lax-ae6c4452b93b4f"));
    assert_eq!(r.block_type.as_deref(), Some("high_perf"));
    assert_eq!(r.full_api_data, json!({ "block": vultr_block() }));
    // Unlabelled: the id is the name; attached: id and label kept.
    let mut b = vultr_block();
    b["label"] = json!("");
    b["attached_to_instance"] = json!("inst-1");
    b["attached_to_instance_label"] = json!("web");
    let r = vultr::map(&b).expect("map");
    assert_eq!(r.name, "ae6c4452-b93b-4f4d-b8c1-2cea28d99fb8");
    assert_eq!(r.attached_to_instance.as_deref(), Some("inst-1"));
    assert_eq!(r.attached_to_instance_label.as_deref(), Some("web"));
}

#[test]
fn a_digitalocean_volume_maps_as_the_seed_says() {
    let r = digitalocean::map(&do_volume()).expect("map");
    assert_eq!(r.kind, ResourceKind::Volume);
    assert_eq!(r.provider, CloudProvider::Digitalocean);
    assert_eq!(
        r.provider_resource_id,
        "3b6381a6-c187-11f0-a93d-0a58ac125cb7"
    );
    assert_eq!(r.name, "sd-test-do");
    assert_eq!(r.size_gb, Some(10));
    assert_eq!(r.region, "atl1");
    assert_eq!(r.status, "active");
    assert_eq!(r.attached_to_instance.as_deref(), Some("529967704"));
    assert_eq!(r.filesystem_type.as_deref(), Some("ext4"));
    assert_eq!(r.full_api_data, json!({ "volume": do_volume() }));
    let mut v = do_volume();
    v["region"] = json!({ "name": "Atlanta 1" });
    v["droplet_ids"] = json!([]);
    let r = digitalocean::map(&v).expect("map");
    assert_eq!(r.region, "Atlanta 1", "the name when there is no slug");
    assert_eq!(r.attached_to_instance, None);
}

#[test]
fn a_linode_bucket_maps_as_the_seed_says() {
    let r = linode::map(&linode_bucket()).expect("map");
    assert_eq!(r.kind, ResourceKind::Bucket);
    assert_eq!(r.provider, CloudProvider::Linode);
    assert_eq!(r.provider_resource_id, "sdtest");
    assert_eq!(r.name, "sdtest");
    assert_eq!(r.region, "us-sea");
    assert_eq!(r.cluster.as_deref(), Some("us-sea-1"));
    assert_eq!(
        r.hostname.as_deref(),
        Some("sdtest.us-sea-1.linodeobjects.com")
    );
    assert_eq!(r.s3_endpoint.as_deref(), Some("us-sea-1.linodeobjects.com"));
    assert_eq!(r.size_bytes, Some(0));
    assert_eq!(r.object_count, Some(0));
    assert_eq!(r.status, "active");
    assert_eq!(r.full_api_data, json!({ "bucket": linode_bucket() }));
}

#[test]
fn garbage_is_refused_with_the_missing_field_named() {
    let mut b = vultr_block();
    b["size_gb"] = json!("ten");
    assert!(vultr::map(&b).expect_err("garbage").contains("size_gb"));
    assert!(digitalocean::map(&json!({}))
        .expect_err("garbage")
        .contains("id"));
    assert!(linode::map(&json!({ "label": 3 }))
        .expect_err("garbage")
        .contains("label"));
}

#[test]
fn pages_are_followed_as_each_provider_links_them() {
    let next = |a: &dyn Adapter, page: Value, url: &str| (a.listings()[0].next)(&page, url);
    let v = next(
        &vultr::Vultr,
        json!({ "meta": { "links": { "next": "bmV4dA==", "prev": "" } } }),
        "http://x/v2/blocks?per_page=100",
    )
    .expect("next");
    assert_eq!(
        v.as_deref(),
        Some("http://x/v2/blocks?per_page=100&cursor=bmV4dA%3D%3D")
    );
    assert_eq!(
        next(
            &vultr::Vultr,
            json!({ "meta": { "links": { "next": "" } } }),
            "http://x/v2/blocks"
        )
        .expect("end"),
        None
    );
    let d = next(
        &digitalocean::DigitalOcean,
        json!({ "links": { "pages": { "next": "http://x/v2/volumes?page=2&per_page=200" } } }),
        "http://x/v2/volumes?per_page=200",
    )
    .expect("next");
    assert_eq!(
        d.as_deref(),
        Some("http://x/v2/volumes?page=2&per_page=200")
    );
    assert_eq!(
        next(
            &digitalocean::DigitalOcean,
            json!({ "links": {} }),
            "http://x/v2/volumes"
        )
        .expect("end"),
        None
    );
    let l = next(
        &linode::Linode,
        json!({ "page": 1, "pages": 3 }),
        "http://x/v4/object-storage/buckets?page=1&page_size=500",
    )
    .expect("next");
    assert_eq!(
        l.as_deref(),
        Some("http://x/v4/object-storage/buckets?page=2&page_size=500")
    );
    assert_eq!(
        next(
            &linode::Linode,
            json!({ "page": 3, "pages": 3 }),
            "http://x/v4/b?page=3"
        )
        .expect("end"),
        None
    );
    assert!(next(&linode::Linode, json!({}), "http://x/v4/b").is_err());
}
