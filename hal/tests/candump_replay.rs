//! candump logs: a recording written by [`CandumpWriter`] replays frame for frame,
//! at the recording's pace scaled by the speed, or unpaced.

use fleet_hal::candump::{CandumpReplay, CandumpWriter, Pace};
use fleet_hal::{CanError, CanFrame, CanSource};
use tokio::time::{Duration, Instant};

const TRUCK_LOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/j1939/canedge-j1939-truck-idle-10s.log"
);

async fn drain<S: CanSource>(src: &mut S) -> Vec<CanFrame> {
    let mut out = Vec::new();
    loop {
        match src.recv().await {
            Ok(f) => out.push(f),
            Err(CanError::Closed) => return out,
            Err(e) => panic!("replay failed: {e}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_truck_log_at_four_times_speed_takes_a_quarter_of_its_ten_seconds() {
    let text = std::fs::read(TRUCK_LOG).expect("fixture");
    let mut replay = CandumpReplay::from_reader(&text[..], Pace::Scaled(4.0));
    let t0 = Instant::now();
    let frames = drain(&mut replay).await;
    let took = t0.elapsed();
    assert_eq!(frames.len(), 3_582);
    let span_us = frames.last().expect("frames").timestamp_us - frames[0].timestamp_us;
    let expected = Duration::from_micros(span_us / 4);
    assert!(
        took + fleet_hal::candump::PACE_SLACK >= expected
            && took < expected + Duration::from_millis(50),
        "took {took:?}, the log spans {span_us} us"
    );
    assert_eq!(replay.progress().items, 3_582);
    assert_eq!(replay.progress().bytes_read, text.len() as u64);
}

#[tokio::test(start_paused = true)]
async fn unpaced_replay_takes_no_time_at_all() {
    let text = std::fs::read(TRUCK_LOG).expect("fixture");
    let mut replay = CandumpReplay::from_reader(&text[..], Pace::Unpaced);
    let t0 = Instant::now();
    assert_eq!(drain(&mut replay).await.len(), 3_582);
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn a_written_recording_replays_the_same_frames_and_skips_bad_lines() {
    let text = std::fs::read(TRUCK_LOG).expect("fixture");
    let mut replay = CandumpReplay::from_reader(&text[..], Pace::Unpaced);
    let frames = drain(&mut replay).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rec.log");
    let mut w = CandumpWriter::create(&path, "can0").expect("create");
    for f in &frames {
        w.write(f).expect("write");
    }
    let mut rtr = CanFrame::new(0x7DF, false, &[], 9).expect("frame");
    rtr.rtr = true;
    w.write(&rtr).expect("write");
    assert_eq!(w.frames(), 3_583);
    w.flush().expect("flush");
    drop(w);
    let mut written = std::fs::read(&path).expect("read back");
    assert_eq!(&written[..text.len()], &text[..], "byte for byte");
    written.extend_from_slice(b"(1.5) can0 123#00\n\xff\xfe\n(2.000000) can0 123#0\n");
    std::fs::write(&path, &written).expect("append junk");

    let mut again = CandumpReplay::open(&path, Pace::Unpaced)
        .await
        .expect("open");
    let back = drain(&mut again).await;
    assert_eq!(&back[..3_582], &frames[..]);
    assert!(back[3_582].rtr);
    let p = again.progress();
    assert_eq!((p.items, p.bad_lines), (3_583, 3));
    assert_eq!(p.fraction(), Some(1.0));
    assert_eq!(again.last_bad_line().map(|(n, _)| *n), Some(3_586));
}
