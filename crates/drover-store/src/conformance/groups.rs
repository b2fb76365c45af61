//! Groups: stored whole with numbers after the group's, dependencies by position, members in
//! order with their results, a retried member waiting again for what it needs, and each notice
//! taken once.

use drover_core::{GroupId, GroupKind, GroupStep, JobState, Membership};

use super::*;
use crate::{GroupFilter, NewGroup, NewMember, Notice};

fn group(name: &str) -> NewGroup {
    NewGroup {
        id: GroupId::from_uuid(uuid::Uuid::now_v7()),
        name: name.into(),
        kind: GroupKind::Flow,
        steps: vec![
            GroupStep {
                name: "work".into(),
                after: Vec::new(),
                jobs: 2,
                axes: vec!["value".into()],
            },
            GroupStep {
                name: "total".into(),
                after: vec!["work".into()],
                jobs: 1,
                axes: Vec::new(),
            },
        ],
        notify: Some("true".into()),
    }
}

fn member(group: GroupId, step: &str, index: u32, after: Vec<usize>) -> NewMember {
    NewMember {
        spec: spec(step),
        membership: Membership {
            group,
            step: Some(step.into()),
            index,
            values: vec![("value".into(), index.to_string())],
        },
        after,
    }
}

pub async fn groups_store_whole_run_in_order_and_notify_once(store: &dyn Store) {
    let before = store.submit(vec![spec("alone")]).await.unwrap()[0];
    let new = group("scan");
    let id = new.id;
    let stored = store
        .submit_group(
            new,
            vec![
                member(id, "work", 0, vec![]),
                member(id, "work", 1, vec![]),
                member(id, "total", 0, vec![0, 1]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(stored.jobs.len(), 3);
    let first = store.get(before).await.unwrap().unwrap().number;
    assert_eq!(stored.number, first + 1, "the group takes the next number");
    let members = store.members(id, false).await.unwrap();
    let numbers: Vec<u64> = members.iter().map(|j| j.number).collect();
    assert_eq!(
        numbers,
        [first + 2, first + 3, first + 4],
        "members follow it"
    );
    assert_eq!(members[2].state, JobState::Blocked, "the fan-in waits");
    assert_eq!(members[2].spec.after, stored.jobs[..2].to_vec());
    assert_eq!(
        members[1].group.as_ref().unwrap().values,
        [("value".into(), "1".into())]
    );
    // A plain job after the group takes the number after its members.
    let mut later = spec("later");
    later.priority = -1; // claimed after everything of the group
    let after = store.submit(vec![later]).await.unwrap()[0];
    assert_eq!(store.get(after).await.unwrap().unwrap().number, first + 5);

    let record = store.group(id).await.unwrap().unwrap();
    assert_eq!((record.jobs, record.state), (3, JobState::Queued));
    assert_eq!(record.steps[1].after, ["work"]);
    let by_name = GroupFilter {
        name: Some("scan".into()),
        active: true,
        ..GroupFilter::default()
    };
    assert_eq!(store.groups(&by_name).await.unwrap().len(), 1);

    // The plain job before is older than the workers: out of the way first.
    let n = node("n1");
    let attempt = claim_and_run(store, &n).await;
    assert_eq!(attempt.job_id, before);
    store.complete(attempt, succeeded()).await.unwrap();
    // Run the two workers; the first gives a result, the second fails.
    let mut ran = Vec::new();
    for _ in 0..2 {
        ran.push(claim_and_run(store, &n).await);
    }
    let mut with_result = succeeded();
    with_result.result = Some(r#"{"v":1}"#.into());
    store.complete(ran[0], with_result).await.unwrap();
    assert!(
        !store.take_notice(Notice::Group(id)).await.unwrap(),
        "no group notice while members wait"
    );
    store.complete(ran[1], failed_exit()).await.unwrap();
    let record = store.group(id).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Failed);
    assert_eq!(
        record.counts.get(&JobState::Failed),
        Some(&2),
        "the fan-in failed with it"
    );
    let results = store.members(id, true).await.unwrap();
    assert_eq!(results[0].result, Some(serde_json::json!({"v": 1})));
    assert_eq!(results[1].result, None);
    assert_eq!(
        store.get(ran[0].job_id).await.unwrap().unwrap().result,
        Some(serde_json::json!({"v": 1}))
    );

    // Each notice once.
    assert!(store.take_notice(Notice::Job(ran[1].job_id)).await.unwrap());
    assert!(!store.take_notice(Notice::Job(ran[1].job_id)).await.unwrap());
    assert!(store.take_notice(Notice::Group(id)).await.unwrap());
    assert!(!store.take_notice(Notice::Group(id)).await.unwrap());

    // Retry upstream first: the fan-in waits for it again, and the group may notify again.
    let failed: Vec<_> = results
        .iter()
        .filter(|j| j.state == JobState::Failed)
        .map(|j| j.id)
        .collect();
    let retried = store.retry(Some(failed)).await.unwrap();
    assert_eq!(retried[0].1, crate::Change::Done(JobState::Queued));
    assert_eq!(retried[1].1, crate::Change::Done(JobState::Blocked));
    let again = claim_and_run(store, &n).await;
    assert_eq!(again.job_id, ran[1].job_id);
    store.complete(again, succeeded()).await.unwrap();
    let total = claim_and_run(store, &n).await;
    assert_eq!(total.job_id, stored.jobs[2]);
    store.complete(total, succeeded()).await.unwrap();
    assert_eq!(
        store.group(id).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    assert!(
        store.take_notice(Notice::Group(id)).await.unwrap(),
        "a new ending, a new notice"
    );
}

pub async fn a_claim_carries_what_its_upstream_jobs_gave(store: &dyn Store) {
    let n = node("n1");
    let up = store.submit(vec![spec("up")]).await.unwrap()[0];
    let mut down = spec("down");
    down.after = vec![up];
    let down = store.submit(vec![down]).await.unwrap()[0];
    let attempt = claim_and_run(store, &n).await;
    let mut outcome = succeeded();
    outcome.result = Some("[1,2]".into());
    store.complete(attempt, outcome).await.unwrap();
    let claim = claim_one(store, &n).await.expect("the downstream job");
    assert_eq!(claim.attempt.job_id, down);
    assert_eq!(claim.inputs.len(), 1);
    let input = &claim.inputs[0];
    assert_eq!(
        (input.id, input.state, input.attempt),
        (up, JobState::Succeeded, 1)
    );
    assert_eq!(input.result, Some(serde_json::json!([1, 2])));
    assert_eq!(input.node.as_ref(), Some(&n));
}

pub async fn only_asked_for_endings_want_a_notice(store: &dyn Store) {
    let mut told = spec("told");
    told.notify = Some("echo done".into());
    let mut quiet = spec("quiet");
    quiet.env.insert("X".into(), r#"{"notify": 1}"#.into());
    let plain = store.submit(vec![told, quiet]).await.unwrap();
    let new = group("g");
    let id = new.id;
    let members = store
        .submit_group(new, vec![member(id, "work", 0, vec![])])
        .await
        .unwrap()
        .jobs;
    let mut all = plain.clone();
    all.extend(&members);
    let mut wanted = store.wanting_notice(all.clone()).await.unwrap();
    wanted.sort();
    let mut expected = vec![plain[0], members[0]];
    expected.sort();
    assert_eq!(wanted, expected, "its own notify, or its group's");
    // Once taken, a notice is wanted no more.
    let n = node("n1");
    let attempt = claim_and_run(store, &n).await;
    assert_eq!(attempt.job_id, plain[0]);
    store.complete(attempt, succeeded()).await.unwrap();
    assert!(store.take_notice(Notice::Job(plain[0])).await.unwrap());
    assert_eq!(store.wanting_notice(all).await.unwrap(), vec![members[0]]);
}
