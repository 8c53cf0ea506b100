//! A real headless Chromium, driven over WebDriver: Debian's `chromium` and
//! `chromium-driver` (installed by `.ci/run`), each test with a driver and a browser
//! profile of its own. Nothing is downloaded.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::server::unused_local_address;

/// How long the page has to show what a test waits for: runs deploy meanwhile.
const PATIENCE: Duration = Duration::from_secs(90);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn installed(candidates: &[&'static str]) -> Option<&'static str> {
    candidates.iter().copied().find(|path| std::path::Path::new(path).exists())
}

impl Browser {
    pub async fn start() -> Browser {
        let (Some(driver_path), Some(chromium)) =
            (installed(&["/usr/bin/chromedriver"]), installed(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]))
        else {
            panic!(
                "the browser tests need Debian's chromium and chromium-driver: apt-get install chromium chromium-driver (.ci/run does)"
            );
        };
        let port = unused_local_address().port();
        // In a process group of its own, with the browser it starts: a test that fails
        // before closing its session leaves no browser behind (see Drop).
        let driver = Command::new(driver_path)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("a browser profile");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,1000", format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("chromium starts under chromedriver");
        Browser { client, driver, _profile: profile }
    }

    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// The first element matching `css`, once there is one. Looked for again after any
    /// error, not only "no such element": a look that meets the page navigating (the
    /// run page follows a rollback to its own run) is "aborted by navigation".
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => return element,
                Err(error) if Instant::now() > deadline => {
                    panic!("{css} never showed: {error}\n{}", self.page_text().await)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|error| panic!("could not click {css}: {error}"));
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.find(css).await.send_keys(text).await.unwrap_or_else(|error| panic!("could not type into {css}: {error}"));
    }

    /// Runs `script` in the page (WebDriver's own execution, which the page's CSP does
    /// not govern) and returns what it returns; an async script gets a callback as its
    /// last argument.
    pub async fn script(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap_or_else(|error| panic!("{script}: {error}"))
    }

    pub async fn async_script(&self, script: &str) -> Value {
        self.client.execute_async(script, Vec::new()).await.unwrap_or_else(|error| panic!("{script}: {error}"))
    }

    pub async fn page_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(error) => format!("(no page: {error})"),
        }
    }

    /// Waits until the text of `css` contains `wanted`.
    pub async fn wait_for_text(&self, css: &str, wanted: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(wanted) {
                return text;
            }
            if Instant::now() > deadline {
                panic!("{css} never said {wanted:?}; it says {text:?}\n{}", self.page_text().await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the browser session (and with it the browser); the driver goes when dropped.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
