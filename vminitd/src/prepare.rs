//! PrepareContainer: a container's whole set-up (clock, mounts, directories, links,
//! addresses, routes, /etc files, binfmt, the init process) in one round trip.
//!
//! Each step goes through the very handler of the rpc of its name, so a batched step is
//! checked and carried out exactly as the single call would be; only the round trips are
//! saved. Steps run in order and the first failure ends the batch: its status is returned
//! in the answer, with its index, so the host words the error as it would for that rpc.

use agent::v1 as pb;
use agent::v1::agent_server::Agent;
use agent::v1::prepare_step::Step;
use tonic::{Request, Status};

/// Checks every step before running any: a step with nothing in it, or retry options on a
/// step that is not a mount, is the host's mistake.
fn check(steps: &[pb::PrepareStep]) -> Result<(), Status> {
    for (i, s) in steps.iter().enumerate() {
        match &s.step {
            None => {
                return Err(Status::invalid_argument(format!(
                    "prepare step {i} has nothing in it"
                )));
            }
            Some(Step::Mount(_)) => {}
            Some(_) if !s.retry_options.is_empty() => {
                return Err(Status::invalid_argument(format!(
                    "prepare step {i} has retry options but is not a mount"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Runs one step through its rpc's handler.
async fn run_step<A: Agent>(svc: &A, step: Step) -> Result<(), Status> {
    match step {
        Step::SetTime(r) => svc.set_time(Request::new(r)).await.map(drop),
        Step::Mount(r) => svc.mount(Request::new(r)).await.map(drop),
        Step::Mkdir(r) => svc.mkdir(Request::new(r)).await.map(drop),
        Step::WriteFile(r) => svc.write_file(Request::new(r)).await.map(drop),
        Step::LinkSet(r) => svc.link_set(Request::new(r)).await.map(drop),
        Step::AddressAdd(r) => svc.address_add(Request::new(r)).await.map(drop),
        Step::RouteAdd(r) => svc.route_add(Request::new(r)).await.map(drop),
        Step::ConfigureDns(r) => svc.configure_dns(Request::new(r)).await.map(drop),
        Step::ConfigureHosts(r) => svc.configure_hosts(Request::new(r)).await.map(drop),
        Step::RegisterBinfmt(r) => svc.register_binfmt(Request::new(r)).await.map(drop),
        Step::CreateProcess(r) => svc.create_process(Request::new(r)).await.map(drop),
        Step::StepRoot(r) => svc.mount_step_root(Request::new(r)).await.map(drop),
    }
}

/// Whether two neighbouring steps are mounts of different disks at targets that do not
/// contain each other, so the batch may mount them at the same time, as the separate calls
/// it replaced did (each mount runs on a blocking thread; mounting two journaled ext4 disks
/// one after another cost a quiet host about 90 ms per start). Steps with retry options
/// keep their own order.
fn independent_disk_mounts(a: &pb::PrepareStep, b: &pb::PrepareStep) -> bool {
    let (Some(Step::Mount(x)), Some(Step::Mount(y))) = (&a.step, &b.step) else {
        return false;
    };
    let disk = |m: &pb::MountRequest| m.source.starts_with("block-serial:");
    a.retry_options.is_empty()
        && b.retry_options.is_empty()
        && disk(x)
        && disk(y)
        && x.source != y.source
        && !nested(&x.target, &y.target)
}

/// Whether one of two absolute paths is the other or lies below it.
fn nested(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    let below = |inner: &str, outer: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    below(a, b) || below(b, a)
}

/// Runs one step, and once more with its retry options when it is a mount that failed.
async fn run_with_retry<A: Agent>(
    svc: &A,
    index: usize,
    s: pb::PrepareStep,
    answer: &mut pb::PrepareContainerResponse,
) -> Result<(), Status> {
    let Some(step) = s.step else {
        // check() refused empty steps before any ran.
        return Err(Status::internal(format!("prepare step {index} is empty")));
    };
    let retry = match (&step, s.retry_options.is_empty()) {
        (Step::Mount(m), false) => Some(pb::MountRequest {
            options: s.retry_options,
            ..m.clone()
        }),
        _ => None,
    };
    let mut result = run_step(svc, step).await;
    if let (Err(first), Some(again)) = (&result, retry) {
        crate::warn!(
            "prepare: mounting {} at {}: {}; trying again with {:?}",
            again.source,
            again.target,
            first.message(),
            again.options
        );
        result = run_step(svc, Step::Mount(again)).await;
        if result.is_ok() {
            answer.retried.push(index as u32);
        }
    }
    result
}

/// Carries out `request`'s steps in order until one fails (two neighbouring independent
/// disk mounts at the same time).
pub async fn run<A: Agent>(
    svc: &A,
    request: pb::PrepareContainerRequest,
) -> Result<pb::PrepareContainerResponse, Status> {
    check(&request.steps)?;
    let mut answer = pb::PrepareContainerResponse::default();
    let mut steps = request.steps.into_iter().enumerate().peekable();
    while let Some((i, s)) = steps.next() {
        let pair = steps
            .next_if(|(_, next)| independent_disk_mounts(&s, next))
            .map(|(_, next)| next);
        let (first, second) = match pair {
            Some(next) => {
                let mut spare = pb::PrepareContainerResponse::default();
                let (a, b) = tokio::join!(
                    run_with_retry(svc, i, s, &mut answer),
                    run_with_retry(svc, i + 1, next, &mut spare)
                );
                (a, Some(b))
            }
            None => (run_with_retry(svc, i, s, &mut answer).await, None),
        };
        if let Err(status) = first {
            answer.failed_code = status.code() as i32;
            answer.failed_message = status.message().to_string();
            return Ok(answer);
        }
        answer.completed = i as u32 + 1;
        if let Some(second) = second {
            if let Err(status) = second {
                answer.failed_code = status.code() as i32;
                answer.failed_message = status.message().to_string();
                return Ok(answer);
            }
            answer.completed = i as u32 + 2;
        }
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(source: &str, target: &str, retry: &[&str]) -> pb::PrepareStep {
        pb::PrepareStep {
            step: Some(Step::Mount(pb::MountRequest {
                source: source.into(),
                target: target.into(),
                ..Default::default()
            })),
            retry_options: retry.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn only_two_disks_at_unrelated_targets_are_mounted_together() {
        let lower = mount("block-serial:rootfs", "/run/c/lower", &[]);
        let rw = mount("block-serial:rw", "/run/c/rw", &[]);
        assert!(independent_disk_mounts(&lower, &rw));
        // The overlay reads the two disks' mounts: never with them.
        let overlay = mount("overlay", "/run/c/rootfs", &[]);
        assert!(!independent_disk_mounts(&rw, &overlay));
        // A target below the other's, the same target, the same disk, a retry.
        assert!(!independent_disk_mounts(
            &lower,
            &mount("block-serial:v0", "/run/c/lower/data", &[])
        ));
        assert!(!independent_disk_mounts(
            &lower,
            &mount("block-serial:v0", "/run/c/lower/", &[])
        ));
        assert!(!independent_disk_mounts(
            &lower,
            &mount("block-serial:rootfs", "/run/c/other", &[])
        ));
        assert!(!independent_disk_mounts(
            &lower,
            &mount("block-serial:v0", "/run/c/v0", &["ro", "noload"])
        ));
        // A sibling whose name merely starts the same is not below it.
        assert!(independent_disk_mounts(
            &lower,
            &mount("block-serial:v0", "/run/c/lowerdata", &[])
        ));
    }

    #[test]
    fn an_empty_step_or_a_retry_on_a_non_mount_is_refused_before_anything_runs() {
        let empty = pb::PrepareStep::default();
        let e = check(&[empty]).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(e.message(), "prepare step 0 has nothing in it");

        let mount = pb::PrepareStep {
            step: Some(Step::Mount(pb::MountRequest::default())),
            retry_options: vec!["ro".into(), "noload".into()],
        };
        let mkdir = pb::PrepareStep {
            step: Some(Step::Mkdir(pb::MkdirRequest::default())),
            retry_options: vec!["ro".into()],
        };
        assert!(check(std::slice::from_ref(&mount)).is_ok());
        let e = check(&[mount, mkdir]).unwrap_err();
        assert_eq!(
            e.message(),
            "prepare step 1 has retry options but is not a mount"
        );
    }
}
