//! The blob store against a real S3-compatible server. CI starts one and sets
//! `BASTION_TEST_S3_URI` (plus the usual `AWS_*` endpoint and credentials); elsewhere the test
//! says it was skipped.

use bastion_core::Digest;
use bastion_store::blob::{self, ByteStream};
use bytes::Bytes;
use futures::StreamExt;

fn body(data: Vec<u8>) -> ByteStream {
    futures::stream::iter(
        data.chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    )
    .boxed()
}

#[tokio::test]
async fn s3_put_get_dedup_and_refusals() {
    let Ok(uri) = std::env::var("BASTION_TEST_S3_URI") else {
        assert!(
            std::env::var_os("BASTION_TEST_REQUIRE_BACKENDS").is_none(),
            "BASTION_TEST_REQUIRE_BACKENDS is set but BASTION_TEST_S3_URI is not"
        );
        eprintln!("BASTION_TEST_S3_URI is not set: S3 blob test skipped");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = blob::open(&uri, tmp.path().join("tmp")).unwrap();
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = Digest::of(&data);
    let stored = store
        .put(body(data.clone()), 10_000_000, None)
        .await
        .unwrap();
    assert_eq!((stored.digest, stored.size), (digest, data.len() as u64));
    assert!(store.exists(&digest).await.unwrap());
    // Same content again: no error, nothing overwritten.
    let again = store
        .put(body(data.clone()), 10_000_000, Some(digest))
        .await
        .unwrap();
    assert_eq!(again, stored);
    let (size, stream) = store.get(&digest).await.unwrap().unwrap();
    assert_eq!(size, data.len() as u64);
    let back: Vec<u8> = stream
        .map(|c| c.unwrap().to_vec())
        .collect::<Vec<_>>()
        .await
        .concat();
    assert_eq!(back, data);
    // A local copy for seeking readers: the same bytes, gone when dropped.
    let local = store.local_file(&digest).await.unwrap().unwrap();
    assert_eq!(std::fs::read(local.path()).unwrap(), data);
    let copy = local.path().to_path_buf();
    drop(local);
    assert!(!copy.exists());
    assert!(
        store
            .local_file(&Digest::of(b"never stored"))
            .await
            .unwrap()
            .is_none()
    );
    // Wrong expected digest or oversized: refused, nothing published.
    let other = b"other content".to_vec();
    assert!(
        store
            .put(body(other.clone()), 10_000_000, Some(digest))
            .await
            .is_err()
    );
    assert!(!store.exists(&Digest::of(&other)).await.unwrap());
    assert!(store.put(body(vec![1u8; 5000]), 1000, None).await.is_err());
    assert!(
        store
            .get(&Digest::of(b"never stored"))
            .await
            .unwrap()
            .is_none()
    );
}
