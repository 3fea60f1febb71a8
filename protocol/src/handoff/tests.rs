use super::*;

fn state() -> WorkerState {
    WorkerState {
        id: "m1".into(),
        mountpoint: "/mnt/a".into(),
        mounts: vec![MountEntry {
            path: "/".into(),
            bootstrap: "/img/bootstrap".into(),
            config: "{\"device\":{}}".into(),
            prefetch_files: Some(vec!["/etc".into()]),
            index: 1,
        }],
        vfs_state: "00ff".into(),
        fuse_init: Some(FuseInit {
            in_flags: 3,
            out_flags: 1,
        }),
        fuse_threads: 4,
        apisock: Some("/run/nydus/m1.sock".into()),
        log_level: "info".into(),
        start_time: 1_700_000_000,
        virtiofs: false,
        highest_index: 3,
    }
}

fn vhost_state() -> VhostUserState {
    VhostUserState {
        version: VHOST_STATE_VERSION,
        acked_features: 1 << 32,
        acked_protocol_features: 1,
        connected: true,
        regions: vec![MemRegionState {
            guest_phys_addr: 0,
            memory_size: 1 << 30,
            userspace_addr: 0x7f00_0000_0000,
            mmap_offset: 0,
        }],
        vrings: vec![
            VringHandover {
                num: 1024,
                next_avail: 7,
                next_used: 7,
                kick: true,
                call: true,
                ..VringHandover::default()
            },
            VringHandover {
                kick: true,
                call: true,
                err: true,
                ..VringHandover::default()
            },
        ],
        vfs_state: "00".into(),
    }
}

#[test]
fn roundtrip_every_worker_message() {
    let msgs = [
        WorkerMsg::Register {
            id: "m1".into(),
            pid: 7,
            version: "v".into(),
            state: state(),
        },
        WorkerMsg::State { state: state() },
        WorkerMsg::Takeover {
            id: "m1".into(),
            pid: 8,
            standby: true,
        },
        WorkerMsg::StandbyReady {
            id: "m1".into(),
            pid: 8,
        },
        WorkerMsg::Activate,
        WorkerMsg::Restore {
            state: state(),
            resend: true,
        },
        WorkerMsg::Stop,
        WorkerMsg::Stopped,
        WorkerMsg::Error {
            message: "x".into(),
        },
        WorkerMsg::Handover { id: "m1".into() },
        WorkerMsg::VhostState {
            state: Some(vhost_state()),
        },
        WorkerMsg::VhostState { state: None },
    ];
    for m in msgs {
        let frame = encode(&m).unwrap();
        let (body, used) = decode_frame(&frame).unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(decode_body::<WorkerMsg>(body).unwrap(), m);
    }
    assert!(WorkerMsg::Restore {
        state: state(),
        resend: false
    }
    .carries_fd());
    assert!(!WorkerMsg::Stop.carries_fd());
    // Socket, one region, then kick+call and kick+call+err.
    let with = WorkerMsg::VhostState {
        state: Some(vhost_state()),
    };
    assert_eq!(with.fd_count(), 7);
    assert_eq!(WorkerMsg::VhostState { state: None }.fd_count(), 0);
}

#[test]
fn older_tables_and_requests_read_without_the_virtio_fs_fields() {
    let mut v = serde_json::to_value(state()).unwrap();
    v.as_object_mut().unwrap().remove("virtiofs");
    let st: WorkerState = serde_json::from_value(v).unwrap();
    assert!(!st.virtiofs);
    let body = br#"{"type":"mount","mountpoint":"/m","bootstrap":"/b","config":"/c"}"#;
    match decode_body::<CtlRequest>(body).unwrap() {
        CtlRequest::Mount { vhost_user, .. } => assert!(!vhost_user),
        other => panic!("{other:?}"),
    }
}

/// A state from a worker that predates `highest_index` (it kept real
/// opens, so its successor needs no record of the indexes it used).
#[test]
fn older_states_read_without_the_highest_index() {
    let mut v = serde_json::to_value(state()).unwrap();
    v.as_object_mut().unwrap().remove("highest_index");
    let st: WorkerState = serde_json::from_value(v).unwrap();
    assert_eq!(st.highest_index, 0);
}

#[test]
fn ctl_roundtrip() {
    let r = CtlRequest::Upgrade {
        target: None,
        nydusd: Some("/bin/x".into()),
    };
    let f = encode(&r).unwrap();
    assert_eq!(
        decode_body::<CtlRequest>(decode_frame(&f).unwrap().0).unwrap(),
        r
    );
}

#[test]
fn two_frames_back_to_back() {
    let mut buf = encode(&WorkerMsg::Stop).unwrap();
    buf.extend(encode(&WorkerMsg::Stopped).unwrap());
    let (b1, n1) = decode_frame(&buf).unwrap();
    assert_eq!(decode_body::<WorkerMsg>(b1).unwrap(), WorkerMsg::Stop);
    let (b2, _) = decode_frame(&buf[n1..]).unwrap();
    assert_eq!(decode_body::<WorkerMsg>(b2).unwrap(), WorkerMsg::Stopped);
}

#[test]
fn truncated_frames_ask_for_more() {
    let frame = encode(&WorkerMsg::Register {
        id: "a".into(),
        pid: 1,
        version: "v".into(),
        state: state(),
    })
    .unwrap();
    for cut in 0..frame.len() {
        match decode_frame(&frame[..cut]) {
            Err(FrameError::Truncated { need }) => assert!(need > cut),
            other => panic!("cut {cut}: {other:?}"),
        }
    }
}

#[test]
fn garbage_is_refused() {
    assert_eq!(
        decode_frame(b"GET / HTTP/1.1\r\n\r\n"),
        Err(FrameError::BadMagic)
    );
    assert_eq!(decode_frame(b"X"), Err(FrameError::BadMagic));
    let mut frame = encode(&WorkerMsg::Stop).unwrap();
    let mut v2 = frame.clone();
    v2[4] = 9;
    assert_eq!(decode_frame(&v2), Err(FrameError::BadVersion(9)));
    let mut big = frame.clone();
    big[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode_frame(&big), Err(FrameError::TooLarge(_))));
    let last = frame.len() - 2;
    frame[last] ^= 0x20;
    assert!(matches!(
        decode_frame(&frame),
        Err(FrameError::Checksum { .. })
    ));
    // A valid frame whose body is not a message.
    let junk = encode_frame(b"{\"type\":\"launch\"}").unwrap();
    let (body, _) = decode_frame(&junk).unwrap();
    assert!(matches!(
        decode_body::<WorkerMsg>(body),
        Err(FrameError::Json(_))
    ));
    assert!(encode_frame(&vec![0; MAX_BODY + 1]).is_err());
}

#[test]
fn errors_are_one_line() {
    for e in [
        FrameError::BadMagic,
        FrameError::BadVersion(2),
        FrameError::TooLarge(1),
        FrameError::Truncated { need: 3 },
    ] {
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn takeover_without_standby_field_is_accepted() {
    let body = br#"{"type":"takeover","id":"m1","pid":3}"#;
    let m: WorkerMsg = decode_body(body).unwrap();
    assert_eq!(
        m,
        WorkerMsg::Takeover {
            id: "m1".into(),
            pid: 3,
            standby: false
        }
    );
}

#[test]
fn frame_reader_reassembles_pieces_and_refuses_garbage() {
    let mut bytes = encode(&WorkerMsg::Stop).unwrap();
    bytes.extend(encode(&WorkerMsg::Activate).unwrap());
    let mut reader = FrameReader::default();
    // One byte at a time: nothing until the first frame is whole.
    let mut got = Vec::new();
    for b in &bytes {
        reader.push(std::slice::from_ref(b));
        while let Some(msg) = reader.pop::<WorkerMsg>().unwrap() {
            got.push(msg);
        }
    }
    assert_eq!(got, vec![WorkerMsg::Stop, WorkerMsg::Activate]);
    assert_eq!(reader.pop::<WorkerMsg>().unwrap(), None);

    let mut bad = FrameReader::default();
    bad.push(b"not a handoff frame at all");
    assert!(bad.pop::<WorkerMsg>().is_err());
}
