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
    }
}

/// Carries out `request`'s steps in order until one fails.
pub async fn run<A: Agent>(
    svc: &A,
    request: pb::PrepareContainerRequest,
) -> Result<pb::PrepareContainerResponse, Status> {
    check(&request.steps)?;
    let mut answer = pb::PrepareContainerResponse::default();
    for (i, s) in request.steps.into_iter().enumerate() {
        let Some(step) = s.step else {
            // check() refused empty steps before any ran.
            return Err(Status::internal(format!("prepare step {i} is empty")));
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
                answer.retried.push(i as u32);
            }
        }
        if let Err(status) = result {
            answer.failed_code = status.code() as i32;
            answer.failed_message = status.message().to_string();
            return Ok(answer);
        }
        answer.completed = i as u32 + 1;
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

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
