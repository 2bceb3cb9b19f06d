//! The same stack name in two regions is two stacks, each with its own role; a stack
//! made before roles were per region keeps its role in its region.

mod common;

use common::{function_role, role_tags, Harness, Sdk};

// MiniStack 1.5.33 (checked with a quick experiment): Lambda functions, user pools and
// REST APIs are kept per region (a function of the same name can exist in two
// regions, each listing sees only its own; ids are region-prefixed or not found from
// the other region), and IAM is global, as on AWS. One gap: invoking a function does
// not check that its execution role exists, so a 200 from `invoke` does not prove the
// role survived: the test asks IAM for it directly.
#[tokio::test]
async fn the_same_stack_in_two_regions_is_two_stacks() {
    let h = Harness::new();
    let regions = ["us-east-1", "eu-west-1"];
    let state_dir = |region: &str| {
        h.dir
            .path()
            .join(format!("state-{region}"))
            .to_string_lossy()
            .into_owned()
    };
    let run = |region: &str, args: &[&str]| {
        let dir = state_dir(region);
        let mut all = vec!["--region", region, "--state-dir", dir.as_str()];
        all.extend_from_slice(args);
        h.run(&all)
    };
    let role_of = |region: &str| format!("{}-handler-{region}", h.stack);

    for region in regions {
        let up = run(region, &["-o", "json", "up"]);
        assert_eq!(up.code, 0, "up in {region}:\n{}", up.describe());
        let report = up.json();
        for r in report["resources"].as_array().unwrap() {
            assert_eq!(
                r["action"], "created",
                "up in {region} makes its own stack, adopting nothing: {r}"
            );
        }
    }

    let mut sdks = Vec::new();
    for region in regions {
        sdks.push(Sdk::in_region(&h.url, region).await);
    }
    let mut roles = sdks[0].role_names().await;
    roles.sort();
    let mut want: Vec<String> = regions.iter().map(|r| role_of(r)).collect();
    want.sort();
    assert_eq!(roles, want, "one role per region (IAM is global)");
    for (region, sdk) in regions.iter().zip(&sdks) {
        let tags = role_tags(sdk, &role_of(region)).await;
        for tag in [
            ("provision:stack".to_string(), h.stack.clone()),
            ("provision:region".to_string(), region.to_string()),
        ] {
            assert!(
                tags.contains(&tag),
                "the {region} role is tagged {tag:?}: {tags:?}"
            );
        }
        let functions = sdk.function_names().await;
        assert_eq!(functions.len(), 1, "functions in {region}: {functions:?}");
        assert_eq!(
            function_role(sdk, &functions[0]).await,
            role_of(region),
            "the {region} function runs as its own region's role"
        );
        assert_eq!(sdk.pools().await.len(), 1, "user pools in {region}");
        assert_eq!(sdk.apis().await.len(), 1, "REST APIs in {region}");
        let call = run(region, &["-o", "json", "invoke"]);
        assert_eq!(call.code, 0, "invoke in {region}:\n{}", call.describe());
        assert_eq!(call.json()["status"], 200, "invoke in {region}");
    }

    let down = run("eu-west-1", &["down"]);
    assert_eq!(down.code, 0, "down in eu-west-1:\n{}", down.describe());
    let (us, eu) = (&sdks[0], &sdks[1]);
    assert!(
        us.iam
            .get_role()
            .role_name(role_of("us-east-1"))
            .send()
            .await
            .is_ok(),
        "down in eu-west-1 left the us-east-1 role alone; roles now: {:?}",
        us.role_names().await
    );
    let functions = us.function_names().await;
    assert_eq!(functions.len(), 1, "us-east-1 functions: {functions:?}");
    let role = function_role(us, &functions[0]).await;
    assert!(
        us.iam.get_role().role_name(&role).send().await.is_ok(),
        "the role of the us-east-1 function ({role}) still exists"
    );
    assert_eq!(us.pools().await.len(), 1, "us-east-1 user pools");
    assert_eq!(us.apis().await.len(), 1, "us-east-1 REST APIs");
    assert_eq!(
        eu.function_names().await,
        Vec::<String>::new(),
        "eu functions"
    );
    assert_eq!(eu.pools().await, Vec::<(String, String)>::new(), "eu pools");
    assert_eq!(eu.apis().await, Vec::<(String, String)>::new(), "eu APIs");
    assert_eq!(
        us.role_names().await,
        vec![role_of("us-east-1")],
        "only the eu-west-1 role is gone"
    );
    let call = run("us-east-1", &["-o", "json", "invoke"]);
    assert_eq!(call.code, 0, "{}", call.describe());
    assert_eq!(call.json()["status"], 200);
    let status = run("us-east-1", &["status"]);
    assert_eq!(
        status.code,
        0,
        "us-east-1 in sync after down in eu-west-1:\n{}",
        status.describe()
    );

    let down = run("us-east-1", &["down"]);
    assert_eq!(down.code, 0, "down in us-east-1:\n{}", down.describe());
    for sdk in &sdks {
        sdk.assert_empty().await;
    }
    for region in regions {
        let dir = std::path::PathBuf::from(state_dir(region));
        assert!(
            !dir.join(format!("{}.json", h.stack)).exists(),
            "state file left in {region}"
        );
    }
}

#[tokio::test]
async fn a_stack_made_before_roles_were_per_region_keeps_its_role_in_its_region() {
    let h = Harness::new();
    let sdk = h.aws().await;
    h.ok(&["up"]);
    let legacy = common::make_legacy(&h, &sdk).await;

    // `up` keeps the legacy role and claims it for its region.
    let up = h.json(&["up"]);
    let role = up["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "iam_role")
        .unwrap()
        .clone();
    assert_eq!(role["id"], legacy.as_str(), "{up}");
    // Made with AWS's basic execution policy attached: moved over to the logs policy.
    assert_eq!(role["action"], "updated", "{up}");
    assert_eq!(sdk.role_names().await, vec![legacy.clone()], "no new role");
    assert!(
        role_tags(&sdk, &legacy)
            .await
            .contains(&("provision:region".to_string(), "us-east-1".to_string())),
        "claimed for us-east-1"
    );
    assert_eq!(h.run(&["status"]).code, 0);

    // Another region gets a role of its own and never touches the legacy one.
    let eu_dir = h.dir.path().join("state-eu");
    let eu = |args: &[&str]| {
        let mut all = vec![
            "--region",
            "eu-west-1",
            "--state-dir",
            eu_dir.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        h.ok(&all)
    };
    eu(&["up"]);
    let mut roles = sdk.role_names().await;
    roles.sort();
    assert_eq!(
        roles,
        vec![legacy.clone(), format!("{}-handler-eu-west-1", h.stack)]
    );
    eu(&["down"]);
    assert_eq!(sdk.role_names().await, vec![legacy.clone()], "legacy kept");

    // Its own region's `down` removes it: it was claimed.
    h.ok(&["down"]);
    sdk.assert_empty().await;

    // A legacy role nobody claimed (no `up` since the upgrade) may serve another
    // region too: `down` leaves it and says how to remove it.
    h.reset();
    h.ok(&["up"]);
    let legacy = common::make_legacy(&h, &sdk).await;
    let down = h.ok(&["down"]);
    assert!(
        down.stderr.contains(&format!("left IAM role {legacy}")),
        "{}",
        down.describe()
    );
    assert_eq!(sdk.role_names().await, vec![legacy.clone()]);
    assert!(sdk.function_names().await.is_empty());
    sdk.iam
        .detach_role_policy()
        .role_name(&legacy)
        .policy_arn("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
        .send()
        .await
        .unwrap();
    sdk.iam
        .delete_role()
        .role_name(&legacy)
        .send()
        .await
        .unwrap();
}
