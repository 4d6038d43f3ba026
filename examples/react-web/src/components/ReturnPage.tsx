import { useEffect } from 'react';

interface Props {
  params: URLSearchParams;
}

/**
 * Where the widget sends the browser when the person is done. Its query parameters are not
 * signed, so anyone could forge them: the app that opened this tab learns the outcome from
 * its subscriptions instead, and this page only says where to go next.
 */
export function ReturnPage({ params }: Props) {
  useEffect(() => {
    // Closes the tab if the app's script opened it; browsers ignore this for any other tab.
    window.close();
  }, []);

  const status = params.get('status');
  const provider = params.get('provider') ?? params.get('resource');

  return (
    <main className="page narrow">
      <section className="card">
        <h1>You can close this tab and return to the app</h1>
        <p>The app you came from follows the connection live and shows the result there.</p>
        {(status || provider) && (
          <p className="muted small">
            This page was told {[provider && `provider ${provider}`, status && `status ${status}`].filter(Boolean).join(', ')}.
            That is only a hint: anyone can put anything in a link, so the app trusts what the gateway
            tells it over its live connection, not this page.
          </p>
        )}
        <p className="small">
          <a href="/">Back to the app</a>
        </p>
      </section>
    </main>
  );
}
