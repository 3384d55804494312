//! The framework examples run as tests: allow, deny and approve paths.

use serde_json::Value;

#[allow(dead_code)]
#[path = "../../examples/langchain_tool.rs"]
mod langchain_tool;

#[allow(dead_code)]
#[path = "../../examples/openai_loop.rs"]
mod openai_loop;

#[tokio::test]
async fn langchain_style_wrapper_allows_denies_and_waits_for_approval() {
    let transcript = langchain_tool::run().await.unwrap();
    assert_eq!(transcript.len(), 8, "{transcript:#?}");
    assert!(
        transcript[0].starts_with(r#"search_orders {"customer":"ada"} -> {"orders""#),
        "{}",
        transcript[0]
    );
    assert!(transcript[1].contains("pretend output of `ls /var/log`"));
    assert_eq!(
        transcript[2],
        r#"shell {"command":"rm -rf /var/log"} -> Tool call denied: Destructive shell commands are blocked (rm -rf /var/log)"#
    );
    assert!(
        transcript[3].ends_with(r#"-> {"order":17,"refunded":80}"#),
        "{}",
        transcript[3]
    );
    // Above 100 asks a human: 300 is approved and runs, 900 is rejected.
    assert!(
        transcript[4].ends_with(r#"-> {"order":17,"refunded":300}"#),
        "{}",
        transcript[4]
    );
    assert!(
        transcript[5].ends_with("Tool call rejected by a human: refunds above 500 go to finance"),
        "{}",
        transcript[5]
    );
    assert_eq!(transcript[6], "final: Refunded what I was allowed to.");
    // The approved refund is decided again when it comes back with its
    // approval: approve, then allow.
    assert_eq!(transcript[7], "audit: allow,allow,deny,allow,approve,allow,approve");
}

#[tokio::test]
async fn openai_style_loop_returns_tool_messages_for_every_path() {
    let messages = openai_loop::run().await.unwrap();
    let tool = |id: &str| -> Value {
        let m = messages.iter().find(|m| m["tool_call_id"] == id).unwrap();
        serde_json::from_str(m["content"].as_str().unwrap()).unwrap()
    };
    assert_eq!(tool("call_1")["forecast"], "sunny");
    let denied = tool("call_2");
    assert_eq!(denied["error"], "denied");
    assert_eq!(denied["rule"], "no_system_files");
    assert_eq!(denied["reason"], "System files are off limits (/etc/passwd)");
    assert_eq!(tool("call_3")["sent"], 40);
    let rejected = tool("call_4");
    assert_eq!(rejected["error"], "approval_rejected");
    assert_eq!(rejected["reason"], "too much money");
    assert_eq!(tool("call_5")["error"], "invalid_arguments");
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["content"], "2 tool calls ran, 3 were refused.");
}
