// A minimal single-page app on Ory Elements, talking to Latchkey on another
// origin with the stock SDK. Nothing here knows it is not Kratos.
import { StrictMode, useEffect, useState } from "react"
import { createRoot } from "react-dom/client"
import { Configuration, FrontendApi, handleFlowError } from "@ory/client-fetch"
import {
  Error as ErrorCard,
  Login,
  Recovery,
  Registration,
  Settings,
  Verification,
} from "@ory/elements-react/theme"
import "@ory/elements-react/theme/styles.css"
import "./app.css"

// Latchkey's public URL, from /config.js so one build serves any deployment.
const sdkUrl = (window.LATCHKEY_URL || "http://127.0.0.1:4433").replace(/\/$/, "")

const frontend = new FrontendApi(
  new Configuration({
    basePath: sdkUrl,
    credentials: "include",
    headers: { Accept: "application/json" },
  }),
)

const config = {
  sdk: { url: sdkUrl },
  project: {
    name: "Latchkey",
    registration_enabled: true,
    verification_enabled: true,
    recovery_enabled: true,
    login_ui_url: "/login",
    registration_ui_url: "/registration",
    recovery_ui_url: "/recovery",
    verification_ui_url: "/verification",
    settings_ui_url: "/settings",
    error_ui_url: "/error",
    default_redirect_url: "/welcome",
  },
}

// Each flow page: start the flow at Latchkey when there is no `?flow=`, else
// fetch it and hand it to its Elements component.
const flows = {
  "/login": { kind: "login", get: (id) => frontend.getLoginFlowRaw({ id }), Card: Login },
  "/registration": {
    kind: "registration",
    get: (id) => frontend.getRegistrationFlowRaw({ id }),
    Card: Registration,
  },
  "/recovery": { kind: "recovery", get: (id) => frontend.getRecoveryFlowRaw({ id }), Card: Recovery },
  "/verification": {
    kind: "verification",
    get: (id) => frontend.getVerificationFlowRaw({ id }),
    Card: Verification,
  },
  "/settings": { kind: "settings", get: (id) => frontend.getSettingsFlowRaw({ id }), Card: Settings },
}

function startFlow(kind) {
  const params = new URLSearchParams(window.location.search)
  params.delete("flow")
  const query = params.toString()
  window.location.assign(`${sdkUrl}/self-service/${kind}/browser${query ? `?${query}` : ""}`)
}

function FlowPage({ kind, get, Card }) {
  const [flow, setFlow] = useState(null)
  useEffect(() => {
    const id = new URLSearchParams(window.location.search).get("flow")
    if (!id) {
      startFlow(kind)
      return
    }
    get(id)
      .then((res) => res.value())
      .then(setFlow)
      .catch(
        handleFlowError({
          onRestartFlow: () => startFlow(kind),
          onValidationError: setFlow,
          onRedirect: (url) => window.location.assign(url),
        }),
      )
  }, [kind, get])
  if (!flow) return <p className="loading">Loading…</p>
  return <Card flow={flow} config={config} />
}

function ErrorPage() {
  const [error, setError] = useState(null)
  useEffect(() => {
    const id = new URLSearchParams(window.location.search).get("id") || ""
    frontend
      .getFlowError({ id })
      .then(setError)
      .catch(() =>
        setError({ error: { code: 500, message: "The error could not be loaded.", status: "Internal Server Error" } }),
      )
  }, [])
  if (!error) return <p className="loading">Loading…</p>
  return <ErrorCard error={error} config={config} />
}

function WelcomePage() {
  const [state, setState] = useState({ loading: true })
  useEffect(() => {
    Promise.all([frontend.toSession(), frontend.createBrowserLogoutFlow()])
      .then(([session, logout]) => setState({ session, logoutUrl: logout.logout_url }))
      .catch(() => setState({}))
  }, [])
  if (state.loading) return <p className="loading">Loading…</p>
  if (!state.session) {
    return (
      <main className="welcome">
        <h1>Not signed in</h1>
        <p>
          <a href="/login">Sign in</a> or <a href="/registration">create an account</a>.
        </p>
      </main>
    )
  }
  const traits = state.session.identity?.traits || {}
  return (
    <main className="welcome">
      <h1>Welcome</h1>
      <p data-testid="signed-in-as">Signed in as {traits.email}</p>
      <p>
        <a href="/settings">Account settings</a> · <a href={state.logoutUrl}>Sign out</a>
      </p>
    </main>
  )
}

function App() {
  const path = window.location.pathname.replace(/\/$/, "") || "/welcome"
  if (flows[path]) return <FlowPage {...flows[path]} />
  if (path === "/error") return <ErrorPage />
  return <WelcomePage />
}

createRoot(document.getElementById("root")).render(
  <StrictMode>
    <App />
  </StrictMode>,
)
